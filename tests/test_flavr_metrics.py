"""FLAVR's PSNR and SSIM (upstream's calc_psnr and ssim_matlab) and the seed's scorer."""
from __future__ import annotations

import math

import numpy as np
import pytest

from harness.spec import Sample
from models.flavr import metrics
from models.flavr.spec import SPEC

C1, C2 = 0.01**2, 0.03**2


def _image(seed: int = 0, shape=(3, 32, 40)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.1, 0.9, shape).astype(np.float32)


def test_identical_images():
    a = _image()
    assert metrics.psnr(a, a) == pytest.approx(80.0, abs=1e-12)  # -10 log10(1e-8)
    assert metrics.ssim_matlab(a, a) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("d", [0.5, 0.1, 0.01, 1e-3])
def test_psnr_of_a_constant_offset(d):
    a = _image()
    assert metrics.psnr(a + d, a) == pytest.approx(-10 * math.log10(d * d + 1e-8), abs=1e-4)


@pytest.mark.parametrize("sigma", [0.1, 0.03])
def test_psnr_of_gaussian_noise(sigma):
    a = _image(shape=(3, 224, 224))
    noisy = a + np.random.default_rng(1).normal(0.0, sigma, a.shape)
    # mean of 150k squared normals: relative spread ~0.4%, i.e. ~0.02 dB
    assert metrics.psnr(noisy, a) == pytest.approx(-10 * math.log10(sigma**2), abs=0.1)


@pytest.mark.parametrize("p, q", [(0.5, 0.5), (0.2, 0.6), (1.0, 0.0)])
def test_ssim_of_flat_images(p, q):
    # no variance anywhere: the map is (2pq + C1) / (p^2 + q^2 + C1) at every voxel
    a = np.full((3, 20, 24), p)
    b = np.full((3, 20, 24), q)
    expected = (2 * p * q + C1) / (p * p + q * q + C1)
    assert metrics.ssim_matlab(a, b) == pytest.approx(expected, rel=1e-12)


def test_ssim_is_symmetric_and_drops_with_noise():
    a = _image()
    b = np.clip(a + np.random.default_rng(2).normal(0, 0.05, a.shape), 0, 1)
    c = np.clip(a + np.random.default_rng(2).normal(0, 0.2, a.shape), 0, 1)
    assert metrics.ssim_matlab(a, b) == pytest.approx(metrics.ssim_matlab(b, a), rel=1e-12)
    assert 1.0 > metrics.ssim_matlab(a, b) > metrics.ssim_matlab(a, c) > 0.0


def _ssim_bruteforce(a: np.ndarray, b: np.ndarray) -> float:
    """ssim_matlab written as upstream does: one 3-D window, replicate pad 5, valid conv3d."""
    g = metrics._gaussian(min(11, a.shape[1], a.shape[2]), 1.5)
    window = g[:, None, None] * g[None, :, None] * g[None, None, :]
    k = window.shape

    def conv(v):
        v = np.pad(v, 5, mode="edge")
        out = np.empty([v.shape[i] - k[i] + 1 for i in range(3)])
        for i, j, m in np.ndindex(*out.shape):
            out[i, j, m] = np.sum(v[i:i + k[0], j:j + k[1], m:m + k[2]] * window)
        return out

    mu1, mu2 = conv(a), conv(b)
    s11, s22, s12 = conv(a * a) - mu1**2, conv(b * b) - mu2**2, conv(a * b) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + C1) * (2 * s12 + C2)) / ((mu1**2 + mu2**2 + C1) * (s11 + s22 + C2))
    return float(ssim_map.mean())


@pytest.mark.parametrize("shape", [(3, 12, 14), (3, 8, 9)])  # the second shrinks the window
def test_separable_ssim_equals_the_3d_window(shape):
    a = _image(3, shape).astype(np.float64)
    b = np.clip(a + np.random.default_rng(4).normal(0, 0.1, shape), 0, 1)
    assert metrics.ssim_matlab(a, b) == pytest.approx(_ssim_bruteforce(a, b), rel=1e-10)


def _sample(target: np.ndarray) -> Sample:
    return Sample(id="ucf101_extracted/0", inputs={}, target=target)


def test_scorer_compares_output_0_as_the_seed_and_output_1_as_mid():
    gt = np.full((3, 16, 16), 0.5, np.float32)
    scorer = SPEC.new_scorer(SPEC.profile("smoke"), SPEC.protocol_for("smoke"))
    # output_0 is 1 above gt: PSNR on the raw values (0 dB); SSIM after clamping it to 1
    scorer.add(_sample(gt), {"output_0": gt + 1.0, "output_1": gt, "output_2": gt - 0.3})
    result = scorer.result()
    assert set(result) == {m.name for m in SPEC.metrics}
    assert result["psnr"] == pytest.approx(-10 * math.log10(1.0 + 1e-8), abs=1e-9)
    assert result["ssim"] == pytest.approx((2 * 0.5 * 1.0 + C1) / (0.25 + 1.0 + C1), rel=1e-9)
    assert result["psnr_mid"] == pytest.approx(80.0) and result["ssim_mid"] == pytest.approx(1.0)


def test_scorer_averages_per_image():
    gt = _image(shape=(3, 16, 16))
    scorer = SPEC.new_scorer(SPEC.profile("smoke"), SPEC.protocol_for("smoke"))
    for d in (0.1, 0.01):
        scorer.add(_sample(gt), {"output_0": gt + d, "output_1": gt + d})
    expected = (-10 * math.log10(0.01 + 1e-8) - 10 * math.log10(1e-4 + 1e-8)) / 2  # not of the mean MSE
    assert scorer.result()["psnr"] == pytest.approx(expected, abs=1e-4)


def test_empty_scorer_gives_nan_for_every_metric():
    result = SPEC.new_scorer(SPEC.profile("smoke"), SPEC.protocol_for("smoke")).result()
    assert set(result) == {m.name for m in SPEC.metrics}
    assert all(math.isnan(v) for v in result.values())
