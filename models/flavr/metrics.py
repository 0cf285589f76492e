"""PSNR and SSIM as FLAVR's ``myutils.eval_metrics`` computes them, and the seed's scorer.

* PSNR per image: ``-10 log10(mean((pred - gt)^2) + 1e-8)`` over C, H, W of the unclamped output
  (``calc_psnr``); the 1e-8 caps identical images at 80 dB.
* SSIM per image: ``pytorch_msssim.ssim_matlab`` -- the RGB image taken as one (C, H, W) volume,
  an 11x11x11 Gaussian window (sigma 1.5) applied after replicate padding of 5 on every axis,
  C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = 1, mean of the map; both images clamped to [0, 1].
  The Gaussian window is an outer product of 1-D windows, so it is applied one axis at a time.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from harness.spec import Profile, Sample

PSNR_EPS = 1e-8
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_PAD = 5  # upstream pads by 5 whatever the window size
SSIM_K1, SSIM_K2 = 0.01, 0.03


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    diff = np.asarray(pred, np.float64) - np.asarray(gt, np.float64)
    return float(-10.0 * np.log10(np.mean(diff * diff) + PSNR_EPS))


def _gaussian(size: int, sigma: float) -> np.ndarray:
    x = np.arange(size) - size // 2
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _gaussian_filter3d(volume: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Replicate-pad by SSIM_PAD, then a 'valid' correlation with ``window`` along each axis."""
    out = np.pad(volume, SSIM_PAD, mode="edge")
    for axis in range(3):
        out = sliding_window_view(out, window.size, axis=axis) @ window
    return out


def ssim_matlab(pred: np.ndarray, gt: np.ndarray, val_range: float = 1.0) -> float:
    """SSIM of two [C, H, W] images as one volume (inputs already clamped by the caller)."""
    a = np.asarray(pred, np.float64)
    b = np.asarray(gt, np.float64)
    # upstream shrinks the window for images smaller than it, keeping the padding at 5
    window = _gaussian(min(SSIM_WINDOW, a.shape[1], a.shape[2]), SSIM_SIGMA)
    mu1 = _gaussian_filter3d(a, window)
    mu2 = _gaussian_filter3d(b, window)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = _gaussian_filter3d(a * a, window) - mu1_sq
    sigma2_sq = _gaussian_filter3d(b * b, window) - mu2_sq
    sigma12 = _gaussian_filter3d(a * b, window) - mu1_mu2
    c1 = (SSIM_K1 * val_range) ** 2
    c2 = (SSIM_K2 * val_range) ** 2
    v1 = 2.0 * sigma12 + c2
    v2 = sigma1_sq + sigma2_sq + c2
    ssim_map = ((2.0 * mu1_mu2 + c1) * v1) / ((mu1_sq + mu2_sq + c1) * v2)
    return float(ssim_map.mean())


class InterpolationScorer:
    """Mean per-image PSNR/SSIM of chosen outputs against the sample's target frame.

    ``comparisons`` maps a metric suffix to the output it scores: {'': 'output_0'} gives 'psnr'
    and 'ssim', {'_mid': 'output_1'} gives 'psnr_mid' and 'ssim_mid'.
    """

    def __init__(self, comparisons: Mapping[str, str]):
        self.comparisons = dict(comparisons)
        self._sums = {f"{m}{s}": 0.0 for s in self.comparisons for m in ("psnr", "ssim")}
        self._count = 0

    def add(self, sample: Sample, outputs: Mapping[str, np.ndarray]) -> None:
        gt = np.asarray(sample.target, np.float64)
        for suffix, name in self.comparisons.items():
            pred = np.asarray(outputs[name], np.float64)
            self._sums[f"psnr{suffix}"] += psnr(pred, gt)
            self._sums[f"ssim{suffix}"] += ssim_matlab(np.clip(pred, 0, 1), np.clip(gt, 0, 1))
        self._count += 1

    def result(self) -> dict[str, float]:
        if not self._count:
            return {name: float("nan") for name in self._sums}
        return {name: total / self._count for name, total in self._sums.items()}


def new_scorer(profile: Profile, protocol: dict) -> InterpolationScorer:
    # The seed's postprocess (upstream's test.py) concatenates the three outputs on the batch
    # axis but loops over the one ground-truth frame, so only output_0 (t = 0.25) meets framet
    # (t = 0.5): the published figures are that comparison. output_1 is the one at t = 0.5.
    return InterpolationScorer({"": protocol["published_output"], "_mid": protocol["mid_output"]})
