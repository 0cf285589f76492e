"""The seeds' postprocess formulas, reimplemented from their scripts, to show that an
ais_bench-layout dump of the suite reads back to the suite's own metric. Test helpers only: the
suite's metrics are the models' scorers."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from harness.aisbench import read_info
from harness.metrics import softmax


def efficient3dcnn_seed_top1(result_path: Path, info_path: Path, labels: Mapping[str, int],
                             classes: int = 101) -> float:
    """Efficient-3DCNNs_postprocess.py's formula: every file of the folder ordered by its number
    (``int(name[:-6])``, which fails on any other file, as the script does), each row softmaxed,
    rows averaged per video id in the .info's order, a video's prediction its top-scoring class;
    top-1 in percent."""
    bins = sorted(Path(result_path).iterdir(), key=lambda p: int(p.name[:-6]))
    per_video: dict[str, list[np.ndarray]] = {}
    for line, path in zip(read_info(info_path), bins):
        rows = np.fromfile(path, dtype=np.float32).reshape(-1, classes).astype(np.float64)
        for video, row in zip(line, rows):
            per_video.setdefault(video, []).append(softmax(row))
    hits = [int(np.argmax(np.mean(scores, axis=0)) == labels[video]) for video, scores in per_video.items()]
    return 100.0 * float(np.mean(hits))


def slowfast_seed_topk(result_dir: Path, label_file: Path, k: int = 1) -> float:
    """slowfast_postprocess.py's formula over an ``--outfmt TXT`` folder: ``<i>_0.txt`` for i in
    0..(files not ending in .json)-1, each line's space-separated fields but the last, rows cut to
    the label file's length, mmaction's top-k accuracy (label among the k highest); in percent."""
    labels = [int(line.split(" ")[1]) for line in Path(label_file).read_text().splitlines() if line.strip()]
    count = len([p for p in Path(result_dir).iterdir() if not p.name.endswith(".json")])
    rows = []
    for index in range(count):
        for line in (Path(result_dir) / f"{index}_0.txt").read_text().splitlines(keepends=True):
            rows.append(np.array([float(x) for x in line.split(" ")[:-1]]))
    rows = rows[:len(labels)]
    hits = [label in np.argsort(row)[::-1][:k] for row, label in zip(rows, labels)]
    return 100.0 * float(np.mean(hits))
