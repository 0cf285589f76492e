"""Task-level agreement of deployed outputs with PyTorch's on the same samples.

Published metrics compare a model with ground truth, and with seeded weights they say nothing
(top-1 is 0 % for PyTorch and for a deployment returning noise alike). Agreement compares the
deployment with PyTorch in the task's own terms, so it judges a deployment whatever the weights:

* ``classification``: top-1 agreement (% of samples whose deployed argmax is PyTorch's) and the
  largest class-probability error over all samples;
* ``frames``: the PSNR of the deployed frames against PyTorch's (the worst sample), peak = the
  declared data range;
* ``flow``: the end-point error between the deployed and PyTorch flows (mean over pixels, the
  worst sample), in pixels.

A model declares its kind, outputs and limits per precision in ``ModelSpec.agreement``.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from harness.spec import Agreement

# statistic -> (direction, unit): 'min' limits are lower bounds, 'max' upper bounds
STATISTICS = {
    "top1_agreement": ("min", "%"),
    "max_probability_error": ("max", ""),
    "min_psnr": ("min", "dB"),
    "max_epe": ("max", "px"),
}


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


class AgreementMeter:
    """Streams (reference, deployed) outputs per sample; ``result()`` gives the statistics."""

    def __init__(self, agreement: Agreement):
        self.spec = agreement
        self.samples = 0
        self._same_top1 = 0
        self._prob_error = 0.0
        self._psnr = math.inf
        self._epe = 0.0

    def add(self, reference: Mapping[str, np.ndarray], deployed: Mapping[str, np.ndarray]) -> None:
        self.samples += 1
        for name in self.spec.outputs:
            ref = np.asarray(reference[name], dtype=np.float64)
            got = np.asarray(deployed[name], dtype=np.float64)
            if self.spec.kind == "classification":
                ref, got = ref.reshape(-1), got.reshape(-1)
                self._same_top1 += int(np.argmax(ref) == np.argmax(got))
                if self.spec.logits:
                    ref, got = _softmax(ref), _softmax(got)
                self._prob_error = max(self._prob_error, _nan_max(np.abs(ref - got)))
            elif self.spec.kind == "frames":
                mse = float(np.mean((ref - got) ** 2))
                psnr = math.inf if mse == 0 else 10 * math.log10(self.spec.data_range ** 2 / mse)
                self._psnr = min(self._psnr, psnr if not math.isnan(mse) else -math.inf)
            elif self.spec.kind == "flow":
                epe = float(np.mean(np.sqrt(((ref - got) ** 2).sum(axis=0))))
                self._epe = max(self._epe, epe if not math.isnan(epe) else math.inf)
            else:
                raise ValueError(f"agreement kind {self.spec.kind!r}: expected classification, frames or flow")

    def result(self) -> dict[str, float]:
        if not self.samples:
            return {}
        if self.spec.kind == "classification":
            return {"top1_agreement": 100.0 * self._same_top1 / (self.samples * len(self.spec.outputs)),
                    "max_probability_error": self._prob_error}
        if self.spec.kind == "frames":
            return {"min_psnr": self._psnr}
        return {"max_epe": self._epe}


def _nan_max(values: np.ndarray) -> float:
    return math.inf if np.isnan(values).any() else float(values.max(initial=0.0))


def judge(agreement: Agreement, statistics: Mapping[str, float], precision: str) -> dict[str, dict]:
    """Each statistic against the spec's limit for ``precision``: {name: {value, limit, bound, passed}}."""
    limits = agreement.limits.get(precision)
    if limits is None:
        raise KeyError(f"agreement declares no limits for precision {precision!r} "
                       f"(declared: {', '.join(agreement.limits)})")
    judged = {}
    for name, value in statistics.items():
        bound, unit = STATISTICS[name]
        limit = limits[name]
        passed = value >= limit if bound == "min" else value <= limit
        judged[name] = {"value": value, "limit": limit, "bound": bound, "unit": unit,
                        "passed": bool(passed and not math.isnan(value))}
    return judged
