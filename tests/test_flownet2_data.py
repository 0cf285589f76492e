"""FlowNet2's Sintel preprocessing and scoring, as the seed's pre- and postprocessing do them."""
from pathlib import Path

import numpy as np
import pytest

from harness.datasets import ItemUnreadable
from harness.registry import get
from harness.sintel import read_flo
from harness.spec import DatasetLayoutError, Sample
from models.flownet2.data import preprocess

SPEC = get("flownet2")
SINTEL = Path(__file__).resolve().parents[2] / "shared" / "data" / "MPI-Sintel"


def profile_and_protocol(name):
    return SPEC.profile(name), SPEC.protocol_for(name)


def test_preprocess_pads_bottom_right_then_normalises_with_the_padded_mean():
    protocol = SPEC.protocol_for("full")
    img1 = np.full((2, 3, 3), (10, 20, 30), np.uint8)
    img2 = np.full((2, 3, 3), (30, 40, 50), np.uint8)
    flow = np.ones((2, 3, 2), np.float32)
    x1, x2, target = preprocess(img1, img2, flow, (4, 4), protocol)
    assert x1.shape == x2.shape == (3, 4, 4) and x1.dtype == np.float32
    # per channel: 6 pixels of each frame over 2 * 16 padded pixels
    mean = np.array([6 * (10 + 30), 6 * (20 + 40), 6 * (30 + 50)]) / 32
    np.testing.assert_allclose(x1[:, 0, 0], ((10, 20, 30) - mean) / 255, rtol=1e-6)
    np.testing.assert_allclose(x2[:, 1, 2], ((30, 40, 50) - mean) / 255, rtol=1e-6)
    np.testing.assert_allclose(x1[:, 3, :], np.repeat(-mean[:, None] / 255, 4, 1), rtol=1e-6)
    np.testing.assert_allclose(x1[:, :, 3], np.repeat(-mean[:, None] / 255, 4, 1), rtol=1e-6)
    assert target is flow


def test_preprocess_oversize_is_an_error_unless_the_protocol_crops():
    img = np.zeros((6, 5, 3), np.uint8)
    flow = np.arange(60, dtype=np.float32).reshape(6, 5, 2)
    with pytest.raises(ItemUnreadable, match="larger than the network input 4x4"):
        preprocess(img, img, flow, (4, 4), SPEC.protocol_for("full"))
    x1, _, target = preprocess(img, img, flow, (4, 4), SPEC.protocol_for("smoke"))
    assert x1.shape == (3, 4, 4)
    np.testing.assert_array_equal(target, flow[:4, :4])


def test_reader_on_generated_data(tmp_path):
    profile, protocol = profile_and_protocol("smoke")
    SPEC.generate_dataset(tmp_path, profile, protocol)
    dataset = SPEC.open_dataset(tmp_path, profile, protocol, None, True)
    samples = list(dataset)
    assert [s.id for s in samples] == [f"{p}/gen_00/frame_000{i}" for p in ("clean", "final") for i in (1, 2)]
    assert dataset.summary["read"] == 4 and not dataset.complete  # generated is never complete
    for s in samples:
        assert set(s.inputs) == set(profile.inputs)
        assert s.inputs["x1"].shape == (3, 64, 128) and s.inputs["x1"].dtype == np.float32
        assert s.target.shape == (*protocol["generated_size"], 2)
        # the 8 padded rows hold the normalised zero of each channel, same in both frames
        np.testing.assert_array_equal(s.inputs["x1"][:, 56:], s.inputs["x2"][:, 56:])
        assert np.ptp(s.inputs["x1"][:, 56:], axis=(1, 2)).max() == 0
        # zero mean over both frames per channel, including the padding
        pair = np.stack([s.inputs["x1"], s.inputs["x2"]])
        np.testing.assert_allclose(pair.mean(axis=(0, 2, 3)), 0, atol=1e-6)


def test_reader_reports_the_expected_layout(tmp_path):
    profile, protocol = profile_and_protocol("smoke")
    with pytest.raises(DatasetLayoutError, match="training/flow"):
        SPEC.open_dataset(tmp_path, profile, protocol, None, False)


@pytest.mark.skipif(not SINTEL.is_dir(), reason=f"{SINTEL} absent")
def test_reader_on_real_sintel_full_profile():
    profile, protocol = profile_and_protocol("full")
    dataset = SPEC.open_dataset(SINTEL, profile, protocol, 1, False)
    (sample,) = list(dataset)
    assert sample.id == "clean/alley_1/frame_0001"
    assert sample.inputs["x1"].shape == sample.inputs["x2"].shape == (3, 448, 1024)
    assert sample.target.shape == (436, 1024, 2)
    np.testing.assert_array_equal(
        sample.target, read_flo(SINTEL / "training/flow/alley_1/frame_0001.flo")
    )
    # undo the normalisation: the frames come back as 8-bit values with 12 zero rows below
    pair = np.stack([sample.inputs["x1"], sample.inputs["x2"]]) * 255.0
    restored = pair - pair[:, :, 440:].mean(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(restored[:, :, 436:], 0, atol=1e-3)
    np.testing.assert_allclose(restored, np.rint(restored), atol=2e-3)
    assert restored.max() <= 255 + 1e-3 and restored[:, :, :436].max() > 100


@pytest.mark.skipif(not SINTEL.is_dir(), reason=f"{SINTEL} absent")
def test_reader_on_real_sintel_smoke_profile_crops():
    profile, protocol = profile_and_protocol("smoke")
    samples = list(SPEC.open_dataset(SINTEL, profile, protocol, None, False))
    assert [s.id for s in samples] == [f"{p}/alley_1/frame_000{i}" for p in ("clean", "final") for i in (1, 2)]
    assert all(s.target.shape == (64, 128, 2) for s in samples)


def scored(pairs):
    profile, protocol = profile_and_protocol("full")
    scorer = SPEC.new_scorer(profile, protocol)
    for i, (pred, gt) in enumerate(pairs):
        scorer.add(Sample(f"clean/s/frame_{i:04d}", {}, gt), {"flow": pred})
    return scorer.result()


def test_scorer_crops_padding_and_averages_per_image_epe():
    # outputs are 5x4; the padded rows below the ground truth are garbage and must be ignored
    off = np.full((2, 5, 4), 1e6, np.float32)
    off[:, :3] = np.array([3.0, 4.0])[:, None, None]  # EPE 5 on the 3x4 ground truth
    exact = np.full((2, 5, 4), 1e6, np.float32)
    exact[:, :1] = 0.0  # EPE 0 on the 1x4 ground truth
    # a 12-pixel image at EPE 5 and a 4-pixel exact one weigh the same
    gt_a, gt_b = np.zeros((3, 4, 2), np.float32), np.zeros((1, 4, 2), np.float32)
    result = scored([(off, gt_a), (exact, gt_b)])
    assert list(result) == [m.name for m in SPEC.metrics]
    assert result["epe_clean"] == pytest.approx(2.5)
    # 4 of 16 pixels within 1, 3 and 5 px (5 is not below 5)
    assert result["px1_clean"] == result["px3_clean"] == result["px5_clean"] == pytest.approx(25.0)


def test_scorer_thresholds():
    gt = np.zeros((1, 4, 2), np.float32)
    pred = np.zeros((2, 1, 4), np.float32)
    pred[0, 0] = [0.5, 2.0, 4.0, 6.0]
    result = scored([(pred, gt)])
    assert result["epe_clean"] == pytest.approx(12.5 / 4)
    assert (result["px1_clean"], result["px3_clean"], result["px5_clean"]) == (25.0, 50.0, 75.0)
