"""The seeds' postprocess formulas, reimplemented from their scripts, to show that an
ais_bench-layout dump of the suite reads back to the suite's own metric. Test helpers only: the
suite's metrics are the models' scorers."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

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


def slowfast_seed_rows(result_dir: Path, label_file: Path) -> tuple[np.ndarray, list[int]]:
    """slowfast_postprocess.py's reading of an ``--outfmt TXT`` folder: the label file's second
    field per line; ``<i>_0.txt`` for i in 0..(files not ending in .json)-1, each line's
    space-separated fields but the last (ais_bench ends each value with a space), rows cut to
    the label file's length. Returns (rows, labels)."""
    labels = [int(line.split(" ")[1]) for line in Path(label_file).read_text().splitlines() if line.strip()]
    count = len([p for p in Path(result_dir).iterdir() if not p.name.endswith(".json")])
    rows = []
    for index in range(count):
        for line in (Path(result_dir) / f"{index}_0.txt").read_text().splitlines(keepends=True):
            rows.append(np.array([float(x) for x in line.split(" ")[:-1]]))
    return np.stack(rows[:len(labels)]), labels


def mmaction_top_k(scores: np.ndarray, labels: Sequence[int], k: int) -> float:
    """mmaction2's ``top_k_accuracy`` as slowfast_postprocess.py calls it, in percent: a row's
    k highest scores as ``np.argsort(...)[:, -k:]`` picks them (its own order among ties), the
    label among them, averaged over rows."""
    top = np.argsort(scores, axis=1)[:, -k:][:, ::-1]
    return 100.0 * float(np.mean([label in row for row, label in zip(top, labels)]))


def slowfast_seed_topk(result_dir: Path, label_file: Path, k: int = 1) -> float:
    """slowfast_postprocess.py on a dump: its reading, then mmaction's top-k accuracy."""
    rows, labels = slowfast_seed_rows(result_dir, label_file)
    return mmaction_top_k(rows, labels, k)
