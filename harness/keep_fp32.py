"""``python -m harness.keep_fp32 MODEL [--out keep.cfg]``: a small list of operators to keep in
fp32 that brings the model's fp16 preview (:mod:`harness.backends.ascend_preview`) back within
its card's fp16 tolerance against PyTorch, written as ATC's ``--keep_dtype`` file.

The file (CANN, ATC ``--keep_dtype``:
https://www.hiascend.com/document/detail/en/canncommercial/850/devaids/atctool/atlasatcparam_16_0074.html)
holds one entry per line: ``OpType::<TypeName>`` (the Ascend IR type) or an operator's name in
the original model. Reading it here also skips blank lines and ``#`` lines (the documentation's
samples annotate with them); nothing but entries is written.

The search, one batch, bounded by ``--max-runs`` runs of the preview (each evaluation and each
localisation counts one):

1. nothing kept: within tolerance -> nothing needs keeping (an empty file);
2. localise the first divergent node (:func:`harness.localise.localise` on the preview with
   the list so far), then try its operator type before its node name; the first candidate
   that brings the outputs within tolerance ends the search, one that lowers the largest error
   joins the list and the search localises again; one that does neither joins too when it is
   the type (localisation then moves past it), and is pruned at the end if useless;
3. each entry of a list found is dropped again if the rest stays within tolerance.

Each candidate's result (within tolerance or not, elements outside, largest |d|) is printed.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from harness.backends.ascend import KeepList
from harness.backends.ascend_preview import AscendPreviewBackend, ascend_type
from harness.localise import THRESHOLDS, deployed_run, localise
from harness.localise_cli import add_model_arguments, first_batch
from harness.outputs import ElementwiseStats

KEEP_FILE_HELP = "ATC's --keep_dtype file: one OpType::<TypeName> or operator name per line"


def parse_keep_dtype(text: str, source: str) -> tuple[str, ...]:
    """The entries of a ``--keep_dtype`` file's ``text``; ``source`` names it in errors."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.startswith("OpType::") and not entry[len("OpType::"):].strip():
            raise ValueError(f"{source} line {number}: {line!r} names no operator type "
                             f"(expected {KEEP_FILE_HELP})")
        entries.append(entry)
    return tuple(entries)


def read_keep_dtype(path: Path, option: str = "--keep-fp32") -> KeepList:
    """A ``--keep_dtype`` file as the keep list a run uses, its source named after ``option``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{option} {path}: no such file (expected {KEEP_FILE_HELP})")
    return KeepList(parse_keep_dtype(path.read_text(errors="replace"), f"{option} {path}"), f"{option} {path}")


def format_keep_dtype(entries: Sequence[str]) -> str:
    return "".join(f"{entry}\n" for entry in entries)


@dataclass(frozen=True)
class Trial:
    """One run of the preview with a keep list, against PyTorch at the fp16 tolerance."""

    keep: tuple[str, ...]
    passed: bool
    outside: int
    elements: int
    max_abs: float

    def describe(self) -> str:
        kept = ", ".join(self.keep) or "nothing kept"
        verdict = "within tolerance" if self.passed else "outside tolerance"
        return f"{kept}: {verdict} ({self.outside}/{self.elements} elements outside, max |d| {self.max_abs:.3g})"


class KeepSearch:
    """The search of the module docstring over one batch (``feeds``) of ``spec``'s ONNX."""

    def __init__(self, spec, onnx_path: Path, feeds: Mapping[str, np.ndarray],
                 reference: Mapping[str, np.ndarray], max_runs: int = 8, log: Callable[[str], None] = print):
        self.spec, self.onnx_path, self.feeds, self.reference = spec, Path(onnx_path), feeds, reference
        self.max_runs, self.log, self.runs, self.trials = max_runs, log, 0, []
        self.threshold = min(THRESHOLDS["fp16"], spec.elementwise["fp16"].rtol)

    def _preview(self, keep: Sequence[str]) -> AscendPreviewBackend:
        return AscendPreviewBackend(keep_fp32=KeepList(tuple(keep), "keep_fp32 candidate"))

    def evaluate(self, keep: Sequence[str]) -> Trial:
        self.runs += 1
        with tempfile.TemporaryDirectory(prefix="keep-fp32-") as tmp:
            deployed = deployed_run(self._preview(keep), self.onnx_path, self.feeds, Path(tmp))
        stats = ElementwiseStats(self.spec.elementwise["fp16"])
        stats.add("batch", self.reference, deployed)
        trial = Trial(tuple(keep), stats.passed, stats.outside, stats.elements, stats.max_abs)
        self.trials.append(trial)
        self.log(f"  run {self.runs}: {trial.describe()}")
        return trial

    def first_divergent(self, keep: Sequence[str]):
        self.runs += 1
        found = localise(self.onnx_path, self._preview(keep), self.feeds, threshold=self.threshold,
                         label=self.spec.name)
        self.log(f"  run {self.runs}: localised with {', '.join(keep) or 'nothing kept'}: {found.summary()}")
        return found.first_divergent

    def run(self) -> Trial | None:
        """The smallest list found within tolerance, or None when ``max_runs`` ran out first."""
        best = self.evaluate(())
        keep: tuple[str, ...] = ()
        while not best.passed and self.runs < self.max_runs:
            first = self.first_divergent(keep)
            if first is None:
                self.log("  no node diverges beyond the threshold, yet the outputs are outside tolerance: stopping")
                return None
            step = self._try_node(keep, first, best)
            if step is None:
                self.log(f"  keeping {first.node} ({first.op_type}) did not help: stopping")
                return None
            keep, best = step
        return self._prune(best) if best.passed else None

    def _try_node(self, keep: tuple[str, ...], first, best: Trial) -> tuple[tuple, Trial] | None:
        """(list, trial) after trying ``first``'s type, then its name; None when neither is new."""
        candidates = [c for c in (f"OpType::{ascend_type(first.op_type, len(first.shape))}", first.node)
                      if c not in keep]
        for candidate in candidates:
            if self.runs >= self.max_runs:
                break
            trial = self.evaluate(keep + (candidate,))
            if trial.passed or trial.max_abs < best.max_abs:
                return keep + (candidate,), trial
        if candidates and candidates[0].startswith("OpType::") and self.runs < self.max_runs:
            return keep + (candidates[0],), best  # localisation moves past it; pruned if useless
        return None

    def _prune(self, found: Trial) -> Trial:
        for entry in found.keep[:-1]:
            if self.runs >= self.max_runs:
                break
            trial = self.evaluate(tuple(e for e in found.keep if e != entry))
            if trial.passed:
                found = trial
        return found


def _parser() -> argparse.ArgumentParser:
    parser = add_model_arguments(argparse.ArgumentParser(
        prog="python -m harness.keep_fp32",
        description="Find operators to keep in fp32 so that the Ascend fp16 preview stays within the "
                    "model's fp16 tolerance; write ATC's --keep_dtype file."))
    parser.add_argument("--out", type=Path, default=Path("keep.cfg"), help="the --keep_dtype file to write")
    parser.add_argument("--max-runs", type=int, default=8, help="preview runs at most (evaluations and localisations)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from harness import registry, stages
    from harness.outputs import torch_forward

    args = _parser().parse_args(argv)
    spec = registry.get(args.model)
    weights = stages.load_weights(spec, args.weights_dir)
    onnx_path = stages.onnx_for(spec, args.profile, args.cache_dir, args.weights_dir)
    _, feeds = first_batch(spec, args.profile, args.data_root, args.cache_dir, args.batch_size)
    reference = torch_forward(stages.torch_network(spec, args.profile, weights), feeds, spec.output_names)
    print(f"{spec.name} ({args.profile}, batch {args.batch_size}, weights "
          f"{weights.provenance.get('path') or 'seeded, torch seed %s' % weights.provenance.get('seed')}): "
          f"the fp16 preview against PyTorch, fp16 tolerance {spec.elementwise['fp16']}")
    found = KeepSearch(spec, onnx_path, feeds, reference, max_runs=args.max_runs).run()
    if found is None:
        print(f"no keep list within {args.max_runs} runs brings {spec.name} within tolerance; nothing written")
        return 1
    args.out.write_text(format_keep_dtype(found.keep))
    print(f"{args.out}: {', '.join(found.keep) or 'nothing needs keeping (an empty list)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
