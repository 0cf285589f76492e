"""MPI-Sintel reader, .flo format, synthetic data with exact ground truth, and EPE metrics."""
from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.datasets import IndexedDataset, ItemUnreadable
from harness.sintel import (
    FlowScorer,
    flow_errors,
    generate_sintel,
    list_pairs,
    load_pair,
    read_flo,
    write_flo,
)
from harness.spec import DatasetLayoutError, Sample

REAL_SINTEL = Path(__file__).resolve().parents[2] / "shared" / "data" / "MPI-Sintel"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sintel")
    generate_sintel(root, size=(48, 64), pairs_per_pass=3, seed=0)
    return root


def test_flo_round_trip(tmp_path):
    flow = np.random.default_rng(0).normal(size=(5, 7, 2)).astype(np.float32)
    write_flo(tmp_path / "a.flo", flow)
    raw = (tmp_path / "a.flo").read_bytes()
    assert struct.unpack("<fii", raw[:12]) == (202021.25, 7, 5)
    assert len(raw) == 12 + 5 * 7 * 2 * 4
    back = read_flo(tmp_path / "a.flo")
    assert back.dtype == np.float32 and back.shape == (5, 7, 2)
    np.testing.assert_array_equal(back, flow)


def test_flo_bad_magic_and_size(tmp_path):
    bad = tmp_path / "bad.flo"
    bad.write_bytes(struct.pack("<fii", 1.0, 2, 2) + bytes(32))
    with pytest.raises(ValueError, match=r"bad\.flo.*202021\.25"):
        read_flo(bad)
    short = tmp_path / "short.flo"
    short.write_bytes(struct.pack("<fii", 202021.25, 2, 2) + bytes(31))
    with pytest.raises(ValueError, match=r"short\.flo.*expected 44"):
        read_flo(short)


def test_layout_error_shows_tree(tmp_path):
    (tmp_path / "training" / "clean").mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match=r"training/flow(.|\n)*frame_%04d\.flo"):
        list_pairs(tmp_path, ["clean"])


@pytest.mark.skipif(not REAL_SINTEL.is_dir(), reason="shared MPI-Sintel sample absent")
def test_real_sintel_pairs():
    items = list_pairs(REAL_SINTEL, ["clean", "final"])
    assert [i.id for i in items] == [
        "clean/alley_1/frame_0001",
        "clean/alley_1/frame_0002",
        "final/alley_1/frame_0001",
        "final/alley_1/frame_0002",
    ]
    assert items[1].meta[0].name == "frame_0003.png"
    img1, img2, flow = load_pair(items[1])
    assert img1.shape == img2.shape == (436, 1024, 3) and img1.dtype == np.uint8
    assert flow.shape == (436, 1024, 2) and flow.dtype == np.float32
    assert np.isfinite(flow).all() and np.abs(flow).max() > 0.5
    # OpenCV reads BGR; the reader must hand back RGB
    bgr = cv2.imread(str(items[1].path))
    np.testing.assert_array_equal(img1, bgr[..., ::-1])
    # u is horizontal, v vertical: warping frame 2 back with the real GT nearly gives frame 1
    # (measured mean abs 2.8 grey levels, occlusions included, against 10.4 without the warp)
    warped, inside = _warp_back(img2, flow)
    unwarped = np.abs(img2.astype(float) - img1)[inside].mean()
    assert np.abs(warped - img1)[inside].mean() < 0.4 * unwarped


def test_unreadable_item_names_file(generated, tmp_path):
    item = list_pairs(generated, ["clean"])[0]
    broken = tmp_path / "broken.flo"
    broken.write_bytes(b"not a flow file")
    with pytest.raises(ItemUnreadable, match="broken.flo"):
        load_pair(type(item)(item.id, item.path, (item.meta[0], broken)))
    with pytest.raises(ItemUnreadable, match="broken.flo"):
        load_pair(type(item)(item.id, item.path, (broken, item.meta[1])))


def test_generated_layout_and_determinism(generated, tmp_path):
    items = list_pairs(generated, ["final", "clean"])
    assert [i.id for i in items] == [
        f"{p}/{s}/frame_{f:04d}"
        for p in ("clean", "final")
        for s, f in (("gen_00", 1), ("gen_00", 2), ("gen_01", 1))
    ]
    ds = IndexedDataset(generated, items, lambda item: [load_pair(item)])
    assert len(list(ds)) == 6 and ds.read == 6 and not ds.missing and not ds.failed
    generate_sintel(tmp_path, size=(48, 64), pairs_per_pass=3, seed=0)
    for a in sorted(generated.rglob("*.*")):
        assert a.read_bytes() == (tmp_path / a.relative_to(generated)).read_bytes(), a
    clean1, _, flow = load_pair(items[0])
    final1, _, flow_final = load_pair(items[3])
    np.testing.assert_array_equal(flow, flow_final)
    assert 0.5 < np.abs(clean1.astype(float) - final1).mean() < 10
    magnitude = np.linalg.norm(flow, axis=-1)
    assert 0.1 < magnitude.max() < 8 and magnitude.std() > 0.01  # not a pure translation


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    at = lambda yy, xx: image[yy, xx].astype(np.float64)  # noqa: E731
    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def _warp_back(img2: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """frame2 sampled at p + flow(p), and where that lies inside frame 2."""
    h, w = flow.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    tx, ty = x + flow[..., 0], y + flow[..., 1]
    inside = (tx >= 0) & (tx <= w - 2) & (ty >= 0) & (ty <= h - 2)
    return _bilinear(img2, np.where(inside, tx, 0), np.where(inside, ty, 0)), inside


def test_generated_ground_truth_is_exact(generated):
    """frame2(p + f(p)) == frame1(p): warping frame 2 back with the GT flow gives frame 1."""
    for item in list_pairs(generated, ["clean"]):
        img1, img2, flow = load_pair(item)
        warped, inside = _warp_back(img2, flow)
        assert inside.mean() > 0.6
        err = np.abs(warped - img1)[inside]
        # residual = uint8 rounding + bilinear interpolation of a 16-64 px wavelength texture
        # (measured at 436x1024: mean 0.32, max 3.4)
        assert err.mean() < 0.6 and err.max() < 5, (item.id, err.mean(), err.max())
        # a flow off by one pixel would show: the warp must be far worse with it
        off, off_inside = _warp_back(img2, flow + np.float32([1.0, 0.0]))
        both = inside & off_inside
        assert np.abs(off - img1)[both].mean() > 5 * err.mean()


def _sample(pass_: str, gt: np.ndarray, i: int = 0) -> Sample:
    return Sample(id=f"{pass_}/s/frame_{i:04d}", inputs={}, target=gt)


def test_flow_errors():
    gt = np.zeros((2, 3, 4))
    pred = gt.copy()
    pred[0], pred[1] = 3.0, 4.0
    np.testing.assert_allclose(flow_errors(pred, gt), np.full((3, 4), 5.0))
    with pytest.raises(ValueError):
        flow_errors(pred[:, :2], gt)


def test_scorer_zero_and_constant_offset():
    gt = np.random.default_rng(0).normal(size=(4, 5, 2)).astype(np.float32)
    scorer = FlowScorer("flow", None, ["clean", "final"])
    scorer.add(_sample("clean", gt), {"flow": np.moveaxis(gt, -1, 0)})
    offset = np.moveaxis(gt, -1, 0) + np.array([3.0, 4.0])[:, None, None]
    scorer.add(_sample("final", gt), {"flow": offset})
    r = scorer.result()
    assert r["epe_clean"] == 0 and r["epe_all_px_clean"] == 0
    assert r["px1_clean"] == r["px3_clean"] == r["px5_clean"] == 100.0
    assert r["epe_final"] == pytest.approx(5.0) and r["epe_all_px_final"] == pytest.approx(5.0)
    assert r["px1_final"] == r["px3_final"] == r["px5_final"] == 0.0  # 5 is not < 5


def test_scorer_image_mean_vs_pixel_weighted_and_crop():
    """Two images of different sizes: per-image mean and pixel-weighted EPE differ."""
    small = np.zeros((2, 2, 2), np.float32)  # 4 pixels, EPE 2 each
    large = np.zeros((4, 4, 2), np.float32)  # 16 pixels, half EPE 0, half EPE 4
    pred_small = np.full((2, 2, 2), 0.0)
    pred_small[0] = 2.0
    pred_large = np.zeros((2, 4, 4))
    pred_large[1, :2] = 4.0
    pad = lambda out: np.pad(out, ((0, 0), (0, 1), (0, 3)), constant_values=99.0)  # noqa: E731
    scorer = FlowScorer("flow", lambda out: out[:, :-1, :-3], ["clean"])
    scorer.add(_sample("clean", small, 1), {"flow": pad(pred_small)})
    scorer.add(_sample("clean", large, 2), {"flow": pad(pred_large)})
    r = scorer.result()
    assert r["epe_clean"] == pytest.approx((2.0 + 2.0) / 2)
    assert r["epe_all_px_clean"] == pytest.approx((4 * 2 + 8 * 4) / 20)
    assert r["px1_clean"] == pytest.approx(100 * 8 / 20)
    assert r["px3_clean"] == pytest.approx(100 * 12 / 20)
    assert r["px5_clean"] == 100.0
    with pytest.raises(ValueError, match="pass 'final'"):
        scorer.add(_sample("final", small), {"flow": pad(pred_small)})


def test_scorer_empty_pass_is_nan():
    r = FlowScorer("flow", None, ["clean"]).result()
    assert set(r) == {"epe_clean", "px1_clean", "px3_clean", "px5_clean", "epe_all_px_clean"}
    assert all(np.isnan(v) for v in r.values())


def test_undefined_flow_is_counted_per_pixel():
    from harness.sintel import undefined_flow

    flow = np.zeros((4, 5, 2), np.float32)
    assert undefined_flow(flow) == ""
    flow[0, 0] = (np.nan, np.inf)  # one pixel, two values
    flow[1, :2, 1] = -np.inf
    flow[3, 4, 0] = 1e10  # Middlebury's unknown flow
    assert undefined_flow(flow) == ("3 of 20 pixels hold NaN or Inf, 1 of 20 pixels hold unknown flow "
                                    "(|u| or |v| > 1e+09)")
