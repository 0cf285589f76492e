"""Outputs of a network over a dataset: batching, the PyTorch forward, an on-disk store per
sample, and the streaming comparison of deployed outputs with PyTorch's.

An :class:`OutputStore` holds one ``.npz`` per sample id (``<root>/<sample-id>.npz``, one array
per ONNX output name): the layout ``--save-outputs`` promises, and what a user's own test reads.
"""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from harness import digest
from harness.cache import atomic_write
from harness.spec import Elementwise, Sample


def batches(samples: Iterable[Sample], batch_size: int, input_names: Sequence[str]
            ) -> Iterator[tuple[list[Sample], dict[str, np.ndarray]]]:
    """Stack samples into batches; the last one is padded by repeating its last sample, since
    compiled artifacts have a static batch size. Only the real samples are returned with it."""
    pending: list[Sample] = []

    def stack(group: list[Sample]) -> dict[str, np.ndarray]:
        padded = group + [group[-1]] * (batch_size - len(group))
        return {n: np.ascontiguousarray(np.stack([s.inputs[n] for s in padded]), dtype=np.float32)
                for n in input_names}

    for sample in samples:
        pending.append(sample)
        if len(pending) == batch_size:
            yield pending, stack(pending)
            pending = []
    if pending:
        yield pending, stack(pending)


def torch_forward(network: torch.nn.Module, feeds: Mapping[str, np.ndarray],
                  output_names: Sequence[str]) -> dict[str, np.ndarray]:
    with torch.no_grad():
        result = network(*(torch.from_numpy(np.ascontiguousarray(a)) for a in feeds.values()))
    if isinstance(result, torch.Tensor):
        result = (result,)
    return {name: t.numpy() for name, t in zip(output_names, result)}


def split(outputs: Mapping[str, np.ndarray], count: int) -> list[dict[str, np.ndarray]]:
    """Batched outputs -> one dict per real sample (padding rows dropped)."""
    return [{n: np.asarray(a[i]) for n, a in outputs.items()} for i in range(count)]


class OutputStore:
    """Outputs per sample id on disk, written atomically (safe when xdist workers share it).

    ``verified``: a cache the suite reads back (the PyTorch reference outputs) rather than a
    dump for the user: each ``.npz`` gets a digest beside it (``.<name>.npz.xxh3``, hidden from
    :meth:`ids`), and a sample whose file does not match it is not ``in`` the store: it is
    removed, its reason kept in ``damaged``, for the caller to compute again and say so."""

    def __init__(self, root: Path, verified: bool = False):
        self.root = Path(root)
        self.verified = verified
        self.damaged: dict[str, str] = {}  # sample id -> why its stored outputs were not used
        self._intact: set[str] = set()  # checked by this process (or written by it)

    def path(self, sample_id: str) -> Path:
        return self.root / f"{sample_id}.npz"

    def _digest_path(self, sample_id: str) -> Path:
        path = self.path(sample_id)
        return path.with_name(f".{path.name}.{digest.ALGORITHM}")

    def __contains__(self, sample_id: str) -> bool:
        if not self.path(sample_id).exists():
            return False
        if not self.verified or sample_id in self._intact:
            return True
        why = self._damage(sample_id)
        if why is not None:
            self.damaged[sample_id] = why
            self.path(sample_id).unlink(missing_ok=True)
        else:
            self._intact.add(sample_id)
        return why is None

    def _damage(self, sample_id: str) -> str | None:
        try:
            recorded = {".": self._digest_path(sample_id).read_text().strip()}
        except OSError:
            recorded = None
        return digest.problem(self.path(sample_id), recorded)

    def put(self, sample_id: str, outputs: Mapping[str, np.ndarray]) -> None:
        path = self.path(sample_id)
        # np.savez appends '.npz' to a name without it: the temporary name keeps the suffix
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        if not self.verified:
            atomic_write(path, lambda out: np.savez(out, **outputs), tmp)
            return

        def write(out: Path) -> None:  # the digest first: a file under its name always has one
            np.savez(out, **outputs)
            sidecar = self._digest_path(sample_id)
            atomic_write(sidecar, lambda d: d.write_text(digest.of_file(out)))

        atomic_write(path, write, tmp)
        self._intact.add(sample_id)

    def get(self, sample_id: str) -> dict[str, np.ndarray]:
        if self.verified and sample_id not in self:
            why = self.damaged.get(sample_id, "not stored")
            raise KeyError(f"{self.root}: no intact outputs stored for sample {sample_id!r}: {why}")
        try:
            with np.load(self.path(sample_id)) as arrays:
                return {n: arrays[n] for n in arrays.files}
        except FileNotFoundError:
            raise KeyError(f"{self.root}: no outputs stored for sample {sample_id!r}") from None

    def ids(self) -> list[str]:
        return sorted(str(p.relative_to(self.root))[:-len(".npz")] for p in self.root.rglob("*.npz")
                      if not p.name.startswith("."))


def clear_earlier_dump(root: Path, models: Iterable[str], folders: Iterable[str]) -> list[Path]:
    """Make ``root`` (``--save-outputs``) hold this run's files only: the folders an earlier dump
    wrote there (``<model>/<folder>/``, a folder per backend and ``torch``) are removed, since the
    seeds' scripts list a folder's contents and would take them for this run's. Anything else
    in it is not the dump's to delete: a ValueError names it. Returns what was removed."""
    root, models, folders = Path(root), set(models), set(folders)
    if not root.is_dir():
        return []
    earlier = sorted(root.iterdir())
    foreign = [p for p in earlier if not (p.is_dir() and p.name in models)]
    foreign += [q for p in earlier if p.is_dir() and p.name in models
                for q in sorted(p.iterdir()) if not (q.is_dir() and q.name in folders)]
    if foreign:
        raise ValueError(f"{root} holds {', '.join(str(p.relative_to(root)) for p in foreign[:5])}"
                         f"{' ...' if len(foreign) > 5 else ''}, which no dump of this suite writes "
                         f"(<model>/<backend or torch>/); give an empty or new folder, or one only "
                         f"an earlier --save-outputs wrote (its dump is then replaced)")
    for path in earlier:
        shutil.rmtree(path)
    return earlier


# what a deployed runtime may return for an output: the declared float32, or float16 from a
# runtime computing at fp16 that hands its own dtype back
OUTPUT_DTYPES = {"fp32": ("float32",), "bf16": ("float32",), "fp16": ("float32", "float16")}


def output_contract_problems(outputs: Mapping[str, np.ndarray], declared: Mapping[str, Sequence[int]],
                             batch_size: int, precision: str) -> list[str]:
    """How a batch of deployed outputs departs from the declared names, shapes (batch axis
    included) and dtype; empty when it does not."""
    problems = []
    missing = [n for n in declared if n not in outputs]
    extra = [n for n in outputs if n not in declared]
    if missing or extra:
        problems.append(f"output names {sorted(outputs)}, declared {list(declared)}")
    allowed = OUTPUT_DTYPES.get(precision, ("float32",))
    for name, shape in declared.items():
        if name not in outputs:
            continue
        array = np.asarray(outputs[name])
        expected = (batch_size, *shape)
        if tuple(array.shape) != expected:
            problems.append(f"output {name} has shape {tuple(array.shape)}, declared {expected}")
        if array.dtype.name not in allowed:
            problems.append(f"output {name} has dtype {array.dtype.name}, declared {' or '.join(allowed)}")
    return problems


def nonfinite(outputs: Mapping[str, np.ndarray]) -> list[str]:
    """Names of the outputs holding NaN or Inf."""
    return [n for n, a in outputs.items() if not np.isfinite(a).all()]


@dataclass
class ElementwiseStats:
    """Streaming element-wise comparison of deployed outputs with the PyTorch reference:
    |deployed - reference| <= atol + rtol * |reference| for every element."""

    tolerance: Elementwise
    elements: int = 0
    outside: int = 0
    max_abs: float = 0.0
    max_ref: float = 0.0
    worst: str = ""  # 'sample-id/output' with the largest |d|
    worst_sample: str = ""

    def add(self, sample_id: str, reference: Mapping[str, np.ndarray], deployed: Mapping[str, np.ndarray]) -> None:
        for name, ref in reference.items():
            if name not in deployed:  # callers check the contract first (output_contract_problems)
                raise ValueError(f"{sample_id}: the deployed model returned no output {name!r} "
                                     f"(it returned {', '.join(deployed) or 'nothing'})")
            got = np.asarray(deployed[name], dtype=np.float64)
            ref = np.asarray(ref, dtype=np.float64)
            if got.shape != ref.shape:
                raise ValueError(f"{sample_id}/{name}: deployed shape {got.shape} != reference {ref.shape}")
            diff = np.abs(got - ref)
            bound = self.tolerance.atol + self.tolerance.rtol * np.abs(ref)
            self.elements += diff.size
            self.outside += int((~(diff <= bound)).sum())  # NaN counts as outside
            peak = float(np.max(diff)) if np.isfinite(diff).all() else math.inf
            if peak > self.max_abs or not self.worst:
                self.max_abs, self.worst, self.worst_sample = max(peak, self.max_abs), f"{sample_id}/{name}", sample_id
            self.max_ref = max(self.max_ref, float(np.nanmax(np.abs(ref))) if ref.size else 0.0)

    @property
    def passed(self) -> bool:
        return self.elements > 0 and self.outside == 0

    def message(self) -> str:
        if not self.elements:
            return "no elements compared (no samples)"
        return (f"{self.outside}/{self.elements} elements outside |d| <= {self.tolerance.atol:g} + "
                f"{self.tolerance.rtol:g}|ref|, max |d| {self.max_abs:.3g} at {self.worst}")

    def as_dict(self) -> dict:
        return {"rtol": self.tolerance.rtol, "atol": self.tolerance.atol, "elements": self.elements,
                "outside_tolerance": self.outside, "max_abs_diff": self.max_abs,
                "max_abs_reference": self.max_ref, "worst": self.worst, "passed": self.passed}


@dataclass
class ReferenceRun:
    """The PyTorch reference over the dataset: outputs per sample, its metrics, what was read."""

    store: OutputStore
    sample_ids: list[str]
    metrics: dict[str, float]
    dataset: dict
    nonfinite: dict[str, list[str]] = field(default_factory=dict)  # sample id -> outputs with NaN/Inf
    computed: int = 0  # samples the PyTorch network ran on in this process (0: all from the cache)

    def get(self, sample_id: str) -> dict[str, np.ndarray]:
        """One sample's outputs by ONNX output name."""
        return self.store.get(sample_id)


@dataclass
class DeployedRun:
    """One deployed model x batch size over the dataset, compared with the reference in lockstep."""

    store: OutputStore
    sample_ids: list[str]
    metrics: dict[str, float]
    elementwise: ElementwiseStats
    agreement: dict[str, float]
    dataset: dict
    nonfinite: dict[str, list[str]] = field(default_factory=dict)
    # batches whose outputs broke the declared names, shapes or dtype (not compared, not scored)
    output_problems: list[str] = field(default_factory=list)

    def get(self, sample_id: str) -> dict[str, np.ndarray]:
        """One sample's outputs by ONNX output name."""
        return self.store.get(sample_id)
