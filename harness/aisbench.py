"""ais_bench's on-disk conventions, both ways.

Outputs, as ``python -m ais_bench --input DIR[,DIR...] --output OUT --output_dirname NAME`` writes
them (both generations: Ascend/tools ais-bench_workload/tool/ais_bench, ``io_oprations.
save_tensors_to_file`` and ``summary.Summary.report``; msit's the same): into ``OUT/NAME/``, per
input file, one raw float32 file per model output named ``<input file stem>_<output index>.bin``
(an input file holding a whole batch gives one output file per output for that batch); and the
timing summary *beside* that folder, ``OUT/NAME_summary.json``: ``filesinfo``,
``NPU_compute_time``, ``H2D_latency``, ``D2H_latency`` (min, max, mean, median, percentile(99%),
count), ``throughput`` = 1000 * batch size / mean compute ms, ``npu_compute_time_list``. The
seeds' postprocess scripts list every file in the output folder as an output (Efficient-3DCNNs
parses each name as a number), so nothing else may be in it; the suite's map from file numbers
to its sample ids goes beside the folder too, ``OUT/NAME.sample_ids.txt``.

Inputs: the folders the seeds' ``*_preprocess.py`` write, described per model by a
:class:`SeedBinLayout` in the spec's ``seed_bin_layout``:

* FLAVR: ``input_0..3/<i>.bin``, one sample per file, float32 (3, 224, 224) each.
* FlowNet2: ``image1``/``image2``/``<i>.bin`` holding a whole batch (the script's --batch_size,
  the last batch padded with its first pair), ``gt/<i>.bin`` float32 (1, 448, 1024, 2) per pair;
  the clean pass only (the script hard-codes it).
* GMA: per Sintel pass (``--status clean|final``, each into its own ``--output``),
  ``image1``/``image2``/``<i>.bin`` one pair each (3, 440, 1024), ``gt/<i>.bin`` (436, 1024, 2),
  numbered from 0 in each pass.
* Efficient-3DCNNs: ``bin1/<i>.bin`` a batch of clips (--inference_batch_size), and a ``.info``
  text file with one line per bin: the batch's video ids, space separated.
* SlowFast: ``bin/<i>.bin`` a batch (1, 3, 32, 224, 224) per video, ``kinetics400.info`` one line
  per video: ``<index> <label>``.

Both ways meet in the file stem: ais_bench names an output after its input file, so the suite
numbers its samples ``0, 1, ...`` in dataset order, as the preprocess numbers its files (per pass
for the Sintel models, whose sample ids start with the pass: ``clean/alley_1/frame_0001``), and the
seed's postprocess pairs the suite's ``<i>_<k>.bin`` with the preprocess's ``<i>.bin``,
``gt/<i>.bin`` and ``.info`` line ``i``. Each file holds one sample: the guides' preprocess
commands write one per sample (FlowNet2 ``--batch_size 1``, Efficient-3DCNNs
``--inference_batch_size=1``), and ais_bench splits a batch's outputs back per input file.
"""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

PERCENTILE = 99  # ais_bench's summary reports this percentile


def summary_path(folder: Path) -> Path:
    """Where ais_bench writes the summary of an output folder: beside it, ``<folder>_summary.json``."""
    folder = Path(folder)
    return folder.parent / f"{folder.name}_summary.json"


def sample_ids_path(folder: Path) -> Path:
    """The suite's map from file numbers to sample ids, beside the output folder."""
    folder = Path(folder)
    return folder.parent / f"{folder.name}.sample_ids.txt"


OUTFMTS = ("BIN", "TXT")  # ais_bench's --outfmt values the seeds use (SlowFast's: TXT)


def output_file_name(input_stem: str, output_index: int, fmt: str = "bin") -> str:
    """ais_bench's name for one output of one input file: ``<stem>_<index>.<fmt>``."""
    return f"{input_stem}_{output_index}.{fmt.lower()}"


def _write_txt(path: Path, array: np.ndarray) -> None:
    """ais_bench's TXT: one line per row of the last axis, each value followed by a space (the
    SlowFast postprocess drops the field after the last space); 9 significant digits give the
    float32 back exactly."""
    rows = np.asarray(array, dtype=np.float32).reshape(-1, array.shape[-1] if array.ndim else 1)
    path.write_text("".join("".join(f"{v:.9g} " for v in row) + "\n" for row in rows))


def write_outputs(folder: Path, input_stem: str, outputs: Sequence[np.ndarray], fmt: str = "BIN") -> list[Path]:
    """Write one input file's outputs (in ONNX output order): raw float32 ``.bin`` files, or
    ``.txt`` for ``fmt="TXT"``."""
    if fmt not in OUTFMTS:
        raise ValueError(f"ais_bench output format {fmt!r}: expected one of {', '.join(OUTFMTS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, array in enumerate(outputs):
        path = folder / output_file_name(input_stem, index, fmt)
        if fmt == "TXT":
            _write_txt(path, np.asarray(array))
        else:
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
    """``<folder>_summary.json`` beside ``folder``, in ais_bench's keys; throughput as ais_bench
    computes it."""
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
    path = summary_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary))
    return path


def read_output(folder: Path, input_stem: str, output_index: int,
                shape: Sequence[int], fmt: str = "BIN") -> np.ndarray:
    """One ``<stem>_<index>.bin`` (or ``.txt``) back as float32 of ``shape`` (-1 allowed for the
    batch axis)."""
    path = Path(folder) / output_file_name(input_stem, output_index, fmt)
    if fmt == "TXT":
        data = np.array(path.read_text().split(), dtype=np.float32)
    else:
        data = np.fromfile(path, dtype=np.float32)
    expected = int(np.prod([d for d in shape if d != -1]))
    if not data.size or data.size % expected:
        raise ValueError(f"{path}: {data.size} float32 values, expected a multiple of "
                         f"{expected} for shape {tuple(shape)}")
    return data.reshape(shape)


SINTEL_PASSES = ("clean", "final")  # the passes one_folder_per_pass splits by


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
    outfmt: str = "BIN"  # the seed's ais_bench --outfmt, which its postprocess reads
    # Sintel: the preprocess writes one pass per folder, numbered from 0 (GMA's --status), and
    # the seed runs ais_bench and its postprocess once per pass; the pass is the first part of
    # the suite's sample id ('clean/alley_1/frame_0001')
    one_folder_per_pass: bool = False
    # the pass a preprocess that writes a single one hard-codes (FlowNet2's: 'clean'), so that
    # its folder can be given as it is, without a <pass>/ level
    single_pass: str | None = None
    # the names a pass's folder may have: the pass's own, and the one the seed's guide gives its
    # preprocess's --output (GMA's 'data_preprocessed_{pass}')
    pass_folders: tuple[str, ...] = ("{pass}",)

    def pass_folder_names(self) -> dict[str, str]:
        """Every accepted name of a pass folder -> its pass."""
        return {template.format(**{"pass": p}): p for p in SINTEL_PASSES for template in self.pass_folders}

    def folder_of(self, sample_id: str) -> str | None:
        """The subfolder of a dump (or of the seed's inputs) holding this sample: its pass, or
        None where the seed keeps every sample in one folder."""
        if not self.one_folder_per_pass:
            return None
        head, sep, _ = sample_id.partition("/")
        if not sep:
            raise ValueError(f"sample {sample_id!r}: expected '<pass>/...' (one folder per pass)")
        return head


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


# --- the suite's outputs in ais_bench's layout (--save-layout ais_bench) ------------------------

class AisBenchDump:
    """Outputs per sample as ais_bench writes them for the seed's preprocessed folder: sample
    number ``i`` in arrival (dataset) order gets ``<i>_<k>.<fmt>`` for output ``k``, numbered per
    folder (per Sintel pass with ``layout.one_folder_per_pass``: ``root/clean/``, ``root/final/``);
    ``finish`` writes each folder's ``_summary.json`` and ``.sample_ids.txt`` beside it. Stands in
    for an :class:`harness.outputs.OutputStore` (``put``/``get``)."""

    def __init__(self, root: Path, output_shapes: Mapping[str, Sequence[int]],
                 layout: SeedBinLayout | None = None):
        self.layout = layout or SeedBinLayout(inputs={})
        if self.layout.outfmt not in OUTFMTS:
            raise ValueError(f"ais_bench output format {self.layout.outfmt!r}: expected one of {', '.join(OUTFMTS)}")
        self.root = Path(root)
        self.output_shapes = {n: tuple(s) for n, s in output_shapes.items()}
        self.fmt = self.layout.outfmt
        self.files: dict[str, tuple[Path, str]] = {}  # sample id -> (folder, file stem)
        self.stems: dict[Path, list[str]] = {}  # folder -> its sample ids, in file-number order
        self.batch_ms: list[float] = []  # each run's time, from TimedSession
        self.batches_of: dict[Path, set[int]] = {}  # folder -> the runs that wrote into it
        self._remove_stale(self.root)

    @staticmethod
    def _remove_stale(folder: Path) -> None:
        """An earlier run's files would be read as this run's (a longer run left more of them)."""
        for path in (summary_path(folder), sample_ids_path(folder)):
            path.unlink(missing_ok=True)
        if not folder.is_dir():
            return
        for stale in folder.iterdir():
            if re.fullmatch(r"\d+_\d+\.(bin|txt)", stale.name):
                stale.unlink()
            elif stale.is_dir() and stale.name.isidentifier():  # a pass folder of a per-pass layout
                AisBenchDump._remove_stale(stale)

    def folder_of(self, sample_id: str) -> Path:
        sub = self.layout.folder_of(sample_id)
        return self.root / sub if sub else self.root

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self.files

    def new_run(self, compute_ms: float) -> None:
        """One run of the session (a batch) took ``compute_ms``; the samples put next came from it."""
        self.batch_ms.append(float(compute_ms))

    def put(self, sample_id: str, outputs: Mapping[str, np.ndarray]) -> None:
        if sample_id not in self.files:
            folder = self.folder_of(sample_id)
            ids = self.stems.setdefault(folder, [])
            self.files[sample_id] = (folder, str(len(ids)))
            ids.append(sample_id)
        folder, stem = self.files[sample_id]
        if self.batch_ms:
            self.batches_of.setdefault(folder, set()).add(len(self.batch_ms) - 1)
        arrays = [np.asarray(outputs[name])[None] for name in self.output_shapes]  # ais_bench keeps the batch axis
        write_outputs(folder, stem, arrays, self.fmt)

    def get(self, sample_id: str) -> dict[str, np.ndarray]:
        if sample_id not in self.files:
            raise KeyError(f"{self.root}: no outputs stored for sample {sample_id!r}")
        folder, stem = self.files[sample_id]
        return {name: read_output(folder, stem, k, shape, self.fmt)
                for k, (name, shape) in enumerate(self.output_shapes.items())}

    def finish(self, batch_size: int) -> list[Path]:
        """Per folder, ais_bench's summary of the runs that wrote into it and the map from file
        numbers to the suite's sample ids, both beside the folder (the seeds' postprocess scripts
        read every file in it); returns the summaries' paths."""
        written = []
        for folder, ids in self.stems.items():
            sample_ids_path(folder).write_text("".join(f"{i} {sample_id}\n" for i, sample_id in enumerate(ids)))
            files_info = {i: {"infiles": [f"{i}.bin"],
                              "outfiles": [str(folder / output_file_name(str(i), k, self.fmt))
                                           for k in range(len(self.output_shapes))]}
                          for i in range(len(ids))}
            runs = sorted(self.batches_of.get(folder, ()))
            written.append(write_summary(folder, batch_size, [self.batch_ms[r] for r in runs],
                                         files_info=files_info))
        return written


class TimedSession:
    """A backend session that gives each run's time to an :class:`AisBenchDump` for its
    summaries: the runtime's compute time where it reports one (Ascend), else the wall time of
    ``run``."""

    def __init__(self, session, dump: AisBenchDump):
        self.session = session
        self.dump = dump

    def run(self, feeds):
        start = time.perf_counter()
        outputs = self.session.run(feeds)
        wall_ms = 1000.0 * (time.perf_counter() - start)
        reported = self.session.last_compute_ms()
        self.dump.new_run(reported if reported is not None else wall_ms)
        return outputs

    def __getattr__(self, name):
        return getattr(self.session, name)


# --- the suite's samples against the seed's preprocessed folder (--seed-inputs) -----------------

def write_seed_inputs(root: Path, layout: SeedBinLayout, samples: Iterable) -> int:
    """Write samples as the seed's preprocess lays them out, one ``<i>.bin`` per sample and input,
    numbered per folder (per pass: ``root/<pass>/``) (for tests, and for users who want the seed's
    inference on the suite's preprocessing); returns how many samples were written."""
    numbers: dict[str | None, int] = {}
    for sample in samples:
        sub_root = layout.folder_of(sample.id)
        index = numbers[sub_root] = numbers.get(sub_root, -1) + 1
        for name, sub in layout.inputs.items():
            folder = Path(root, *([sub_root] if sub_root else []), sub)
            folder.mkdir(parents=True, exist_ok=True)
            np.ascontiguousarray(sample.inputs[name], dtype=np.float32).tofile(folder / f"{index}.bin")
    return sum(n + 1 for n in numbers.values())


def seed_input_folders(root: Path, layout: SeedBinLayout) -> dict[str | None, Path]:
    """The seed's preprocessed folders under ``root`` by pass (None: one folder for every sample).

    One folder per pass: ``root/<pass>/`` holding the input subfolders (the seed's preprocess run
    with ``--output root/<pass>``), or under the name the seed's guide gives it
    (``layout.pass_folders``: GMA's ``data_preprocessed_clean``); where the seed's preprocess
    writes a single pass (``layout.single_pass``), ``root`` itself may hold them, as that script
    writes it. A folder of another name is refused, listing the accepted names.
    """
    root = Path(root)
    has_inputs = lambda folder: any((folder / sub).is_dir() for sub in layout.inputs.values())  # noqa: E731
    if not layout.one_folder_per_pass:
        return {None: root}
    names = layout.pass_folder_names()
    accepted = ", ".join(f"{name}/" for name in names)
    if layout.single_pass:
        accepted += f", or {root} itself for the {layout.single_pass} pass (its preprocess's --output as written)"
    if has_inputs(root):
        if layout.single_pass is None:
            raise ValueError(f"{root}: holds {', '.join(sorted(set(layout.inputs.values())))}/ directly; "
                             f"this seed preprocesses each Sintel pass into its own folder: give them "
                             f"as {root}/clean/ and {root}/final/ (accepted names: {accepted})")
        return {layout.single_pass: root}
    found = [d for d in sorted(root.iterdir()) if d.is_dir() and has_inputs(d)] if root.is_dir() else []
    if not found:
        raise FileNotFoundError(f"{root}: no pass folder (expected e.g. {root}/clean/"
                                f"{next(iter(layout.inputs.values()))}/0.bin, one folder per Sintel pass "
                                f"as the seed's preprocess writes it, named {accepted})")
    unknown = [d.name for d in found if d.name not in names]
    if unknown:
        raise ValueError(f"{root}: {', '.join(f'{n}/' for n in unknown)}: not a name of a Sintel pass folder "
                         f"of this seed (accepted names: {accepted})")
    folders: dict[str | None, Path] = {}
    for folder in found:
        other = folders.setdefault(names[folder.name], folder)
        if other is not folder:
            raise ValueError(f"{root}: {other.name}/ and {folder.name}/ both hold the {names[folder.name]} pass; "
                             f"give one")
    return folders


@dataclass(frozen=True)
class InputDifference:
    """Where one seed file departs from the suite's sample for the same item."""

    file: str  # relative to the seed folder, e.g. 'input_0/3.bin'
    sample_id: str
    max_abs: float
    mean_abs: float
    fraction: float  # of elements beyond the tolerance

    def __str__(self) -> str:
        return (f"{self.file} vs {self.sample_id}: max |diff| {self.max_abs:.4g}, mean {self.mean_abs:.4g}, "
                f"{100 * self.fraction:.3g} % of elements beyond tolerance")


@dataclass
class SeedInputComparison:
    """The seed's preprocessed tensors against the suite's, item by item (file ``i`` of a folder
    <-> the suite's ``i``-th sample of that folder's pass, or of the dataset)."""

    root: Path
    atol: float
    rtol: float
    compared: int = 0
    differences: list[InputDifference] = field(default_factory=list)
    unpaired: list[str] = field(default_factory=list)  # files without a sample, or the reverse
    # per seed folder, what its files were judged against; and the passes given no folder
    judged: dict[str, str] = field(default_factory=dict)
    not_given: dict[str, int] = field(default_factory=dict)  # pass -> the suite's samples in it
    max_abs: float = 0.0  # the largest |seed - suite| over every file compared

    @property
    def passed(self) -> bool:
        return self.compared > 0 and not self.differences and not self.unpaired

    def coverage(self) -> str:
        """Which files were judged against which of the suite's samples."""
        lines = [f"{folder}: {what}" for folder, what in self.judged.items()]
        lines.append(f"max |diff| over the {self.compared} file(s) compared: {self.max_abs:.3g}")
        lines += [f"{name} pass: no seed folder, its {count} sample(s) not compared"
                  for name, count in self.not_given.items()]
        return "\n".join(lines)

    def message(self) -> str:
        if not self.compared and not self.unpaired:
            return f"{self.root}: no item to compare"
        parts = [(f"{len(self.differences)} of {self.compared} seed file(s) differ from the suite's "
                  f"preprocessing (|diff| > {self.atol:g} + {self.rtol:g} * |suite|)")]
        parts += [f"  {d}" for d in self.differences[:10]]
        if len(self.differences) > 10:
            parts.append(f"  ... and {len(self.differences) - 10} more")
        if self.unpaired:
            parts.append(f"unpaired: {', '.join(self.unpaired[:10])}")
        parts.append(self.coverage())
        return "\n".join(parts)

    def as_dict(self) -> dict:
        return {"root": str(self.root), "compared": self.compared, "atol": self.atol, "rtol": self.rtol,
                "differing": [d.__dict__ for d in self.differences], "unpaired": self.unpaired,
                "judged": self.judged, "not_given": self.not_given, "max_abs": self.max_abs,
                "passed": self.passed}


# Two implementations of the same preprocessing (PIL vs OpenCV resize, uint8 rounding, float
# order of operations) agree to float32 rounding; a different crop, interpolation or
# normalisation moves many elements by far more than this.
SEED_INPUT_ATOL = 1e-4
SEED_INPUT_RTOL = 1e-5


def _compare_one(result: SeedInputComparison, rel: str, sample, seed: np.ndarray, mine: np.ndarray,
                 expected_size: int) -> None:
    """One seed file against one input of the suite's sample, element-wise."""
    result.compared += 1
    if seed.size != mine.size:
        result.differences.append(InputDifference(
            f"{rel} ({seed.size} values, the suite's sample {expected_size}: another --profile?)",
            sample.id, float("inf"), float("inf"), 1.0))
        return
    nonfinite = {who: int((~np.isfinite(a)).sum()) for who, a in (("the seed file", seed), ("the suite", mine))}
    named = "; ".join(f"{who} holds {n} NaN or Inf of {seed.size} values" for who, n in nonfinite.items() if n)
    diff = np.abs(seed.astype(np.float64) - mine)
    result.max_abs = max(result.max_abs, float(diff.max(initial=0.0)))
    beyond = ~(diff <= result.atol + result.rtol * np.abs(mine))  # NaN is beyond: it never compares
    if beyond.any():
        result.differences.append(InputDifference(f"{rel} ({named})" if named else rel, sample.id,
                                                  float(diff.max()), float(diff.mean()), float(beyond.mean())))


def compare_seed_inputs(root: Path, layout: SeedBinLayout, samples: Iterable,
                        sample_shapes: Mapping[str, Sequence[int]], atol: float = SEED_INPUT_ATOL,
                        rtol: float = SEED_INPUT_RTOL) -> SeedInputComparison:
    """Pair the seed's ``<i>.bin`` files with the suite's samples in dataset order (per pass, for
    a seed that preprocesses each pass into its own folder) and compare them element-wise, each
    input on its own; a file of another shape is a difference too."""
    root = Path(root)
    result = SeedInputComparison(root, atol, rtol)
    expected = {n: int(np.prod(s)) for n, s in sample_shapes.items()}
    folders = seed_input_folders(root, layout)
    files = {label: {name: {int(p.stem): p for p in _numbered_bins(folder / sub)}
                     for name, sub in layout.inputs.items()}
             for label, folder in folders.items()}
    judged: dict[str | None, list[str]] = {label: [] for label in folders}
    for sample in samples:
        label = layout.folder_of(sample.id)
        if label not in folders:
            result.not_given[label] = result.not_given.get(label, 0) + 1
            continue
        index = len(judged[label])
        judged[label].append(sample.id)
        prefix = f"{folders[label].relative_to(root)}/" if folders[label] != root else ""
        for name, sub in layout.inputs.items():
            rel = f"{prefix}{sub}/{index}.bin"
            path = files[label][name].pop(index, None)
            if path is None:
                result.unpaired.append(f"{rel}: missing, no seed file for suite sample {sample.id}")
                continue
            _compare_one(result, rel, sample, np.fromfile(path, dtype=np.float32),
                         np.ascontiguousarray(sample.inputs[name], dtype=np.float32).ravel(), expected[name])
    for label, per_input in files.items():
        left = sorted({i for paths in per_input.values() for i in paths})
        if left:
            result.unpaired.append(f"{folders[label]}: {len(left)} file(s) from {left[0]}.bin on have no suite "
                                   f"sample (the suite has {len(judged[label])}"
                                   f"{f' in the {label} pass' if label else ''})")
    for label, ids in judged.items():
        what = f"the suite's {label} pass" if label else "the suite's samples"
        span = f" ({ids[0]} .. {ids[-1]})" if ids else ""
        result.judged[str(folders[label])] = f"{len(ids)} file(s) per input against {what}{span}"
    return result
