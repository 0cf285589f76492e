"""ais_bench's on-disk conventions, both ways.

Outputs, as ``python -m ais_bench --input DIR[,DIR...] --output OUT`` writes them (Ascend/tools,
ais-bench_workload/tool/ais_bench, ``io_oprations.save_tensors_to_file``): per input file, one raw
float32 file per model output named ``<input file stem>_<output index>.bin``; an input file
holding a whole batch gives one output file per output for that batch. ``sumary.json`` beside them
(ais_infer's name and place, which the seeds' postprocess scripts skip) holds the timing summary:
``NPU_compute_time``, ``H2D_latency``, ``D2H_latency`` (min, max, mean, median, percentile(99%),
count), ``throughput`` = 1000 * batch size / mean compute ms, ``npu_compute_time_list`` and
``filesinfo``. With them a user runs the seed's own ``*_postprocess.py`` on the suite's outputs.

Inputs: the folders the seeds' ``*_preprocess.py`` write, described per model by a
:class:`SeedBinLayout` in the spec's ``seed_bin_layout``:

* FLAVR: ``input_0..3/<i>.bin``, one sample per file, float32 (3, 224, 224) each.
* FlowNet2: ``image1``/``image2``/``<i>.bin`` holding a whole batch (the script's --batch_size,
  the last batch padded with its first pair), ``gt/<i>.bin`` float32 (1, 448, 1024, 2) per pair.
* GMA: ``image1``/``image2``/``<i>.bin`` one pair each (3, 440, 1024), ``gt/<i>.bin`` (436, 1024, 2).
* Efficient-3DCNNs: ``bin1/<i>.bin`` a batch of clips (--inference_batch_size), and a ``.info``
  text file with one line per bin: the batch's video ids, space separated.
* SlowFast: ``bin/<i>.bin`` a batch (1, 3, 32, 224, 224) per video, ``kinetics400.info`` one line
  per video: ``<index> <label>``.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

SUMMARY_FILE = "sumary.json"  # ais_infer's spelling, kept by the seeds' scripts
PERCENTILE = 99  # ais_bench's summary reports this percentile


def output_file_name(input_stem: str, output_index: int, fmt: str = "bin") -> str:
    """ais_bench's name for one output of one input file: ``<stem>_<index>.<fmt>``."""
    return f"{input_stem}_{output_index}.{fmt}"


def write_outputs(folder: Path, input_stem: str, outputs: Sequence[np.ndarray]) -> list[Path]:
    """Write one input file's outputs (in ONNX output order) as raw float32 ``.bin`` files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, array in enumerate(outputs):
        path = folder / output_file_name(input_stem, index)
        np.ascontiguousarray(array, dtype=np.float32).tofile(path)
        paths.append(path)
    return paths


def _stats(values: Sequence[float]) -> dict:
    values = np.asarray(values, dtype=np.float64)
    if not values.size:
        return {"min": 0.0, "max": 0.0, "mean": 0.0, "median": 0.0,
                f"percentile({PERCENTILE}%)": 0.0, "count": 0}
    return {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()),
            "median": float(np.median(values)),
            f"percentile({PERCENTILE}%)": float(np.percentile(values, PERCENTILE)),
            "count": int(values.size)}


def write_summary(folder: Path, batch_size: int, compute_ms: Sequence[float],
                  h2d_ms: Sequence[float] = (), d2h_ms: Sequence[float] = (),
                  files_info: Mapping[int, Mapping[str, list[str]]] | None = None) -> Path:
    """``sumary.json`` in ais_bench's keys; throughput as ais_bench computes it."""
    compute = _stats(compute_ms)
    summary = {
        "filesinfo": {str(k): dict(v) for k, v in (files_info or {}).items()},
        "NPU_compute_time": compute,
        "H2D_latency": _stats(h2d_ms),
        "D2H_latency": _stats(d2h_ms),
        "throughput": 1000.0 * batch_size / compute["mean"] if compute["mean"] else 0.0,
        "npu_compute_time_list": [float(t) for t in compute_ms],
        "pid": os.getpid(),
    }
    path = Path(folder) / SUMMARY_FILE
    path.write_text(json.dumps(summary))
    return path


def read_output(folder: Path, input_stem: str, output_index: int,
                shape: Sequence[int]) -> np.ndarray:
    """One ``<stem>_<index>.bin`` back as float32 of ``shape`` (-1 allowed for the batch axis)."""
    path = Path(folder) / output_file_name(input_stem, output_index)
    data = np.fromfile(path, dtype=np.float32)
    expected = int(np.prod([d for d in shape if d != -1]))
    if not data.size or data.size % expected:
        raise ValueError(f"{path}: {data.size} float32 values, expected a multiple of "
                         f"{expected} for shape {tuple(shape)}")
    return data.reshape(shape)


@dataclass(frozen=True)
class SeedBinLayout:
    """Where a seed's ``*_preprocess.py`` puts each ONNX input, and what it writes beside them."""

    inputs: Mapping[str, str]  # ONNX input name -> subfolder of ``<i>.bin`` float32 files
    # shape of one sample as the files hold it (the preprocess's, not the profile's: it may
    # carry extra unit axes); None: the ONNX input's per-sample shape
    sample_shapes: Mapping[str, tuple[int, ...]] | None = None
    gt: str | None = None  # subfolder of ground-truth ``<i>.bin`` per sample (flow models)
    gt_shape: tuple[int, ...] | None = None  # per-sample shape of a gt file
    info: str | None = None  # the preprocess's label/id text file, one line per input file
    extra: Mapping[str, str] = field(default_factory=dict)  # notes shown in errors


def _numbered_bins(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected the seed's preprocessed folder of <i>.bin files")
    bins = [p for p in folder.iterdir() if re.fullmatch(r"\d+\.bin", p.name)]
    if not bins:
        raise FileNotFoundError(f"{folder}: no <i>.bin files (the seed's preprocess writes 0.bin, 1.bin, ...)")
    return sorted(bins, key=lambda p: int(p.stem))


def read_seed_inputs(root: Path, layout: SeedBinLayout, sample_shapes: Mapping[str, Sequence[int]]
                     ) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """(file stem, {ONNX input: float32 array (n, *sample shape)}) per numbered input file.

    ``sample_shapes``: the ONNX inputs' per-sample shapes; ``n`` is how many samples a file holds
    (1, or the preprocess's batch size). Files of one stem must hold the same count per input.
    """
    root = Path(root)
    per_input = {name: _numbered_bins(root / sub) for name, sub in layout.inputs.items()}
    stems = [[p.stem for p in paths] for paths in per_input.values()]
    if any(s != stems[0] for s in stems):
        raise ValueError(f"{root}: the input folders {list(layout.inputs.values())} list different "
                         f"<i>.bin files; the seed's preprocess writes the same numbers in each")
    for position, stem in enumerate(stems[0]):
        arrays = {}
        for name, paths in per_input.items():
            shape = tuple(sample_shapes[name])
            stored = tuple((layout.sample_shapes or {}).get(name, shape))
            data = np.fromfile(paths[position], dtype=np.float32)
            size = int(np.prod(stored))
            if not data.size or data.size % size:
                raise ValueError(f"{paths[position]}: {data.size} float32 values, expected a "
                                 f"multiple of {size} (one sample is {stored})")
            arrays[name] = data.reshape(-1, *shape)
        counts = {a.shape[0] for a in arrays.values()}
        if len(counts) != 1:
            raise ValueError(f"{root}: input files {stem}.bin hold different sample counts {counts}")
        yield stem, arrays


def read_gt(root: Path, layout: SeedBinLayout, index: int) -> np.ndarray:
    """The seed's ground truth for sample ``index`` (flow: H x W x 2 as the preprocess wrote it)."""
    path = Path(root) / layout.gt / f"{index}.bin"
    data = np.fromfile(path, dtype=np.float32)
    if data.size != int(np.prod(layout.gt_shape)):
        raise ValueError(f"{path}: {data.size} float32 values, expected {layout.gt_shape}")
    return data.reshape(layout.gt_shape)


def read_info(path: Path) -> list[list[str]]:
    """The preprocess's ``.info``: one list of space-separated fields per line (per input file)."""
    lines = Path(path).read_text().splitlines()
    return [line.split() for line in lines if line.strip()]
