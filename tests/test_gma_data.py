"""GMA's Sintel preprocessing (InputPadder 'sintel' padding), reader and scorer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.datasets import ItemUnreadable
from harness.registry import get
from harness.spec import DatasetLayoutError, Sample
from models.gma import data

SPEC = get("gma")
REAL_SINTEL = Path(__file__).resolve().parents[2] / "shared" / "data" / SPEC.dataset_dir


def input_padder_pad(height: int, width: int) -> tuple[int, int, int, int]:
    """Upstream's InputPadder(mode='sintel') arithmetic, restated."""
    pad_ht = (((height // 8) + 1) * 8 - height) % 8
    pad_wd = (((width // 8) + 1) * 8 - width) % 8
    return pad_ht // 2, pad_ht - pad_ht // 2, pad_wd // 2, pad_wd - pad_wd // 2


def test_padding_matches_input_padder():
    assert data.padding(436, 1024, 8) == (2, 2, 0, 0)
    for h in range(1, 40):
        for w in (1, 5, 8, 13, 1024):
            assert data.padding(h, w, 8) == input_padder_pad(h, w), (h, w)


def test_pad_frame_replicates_like_torch():
    rgb = np.random.default_rng(0).integers(0, 256, size=(5, 11, 3), dtype=np.uint8)
    ours = data.pad_frame(rgb, 8)
    chw = torch.from_numpy(rgb).permute(2, 0, 1).float()
    top, bottom, left, right = input_padder_pad(5, 11)
    ref = F.pad(chw[None], [left, right, top, bottom], mode="replicate")[0]
    assert ours.dtype == np.float32 and ours.shape == (3, 8, 16)
    np.testing.assert_array_equal(ours, ref.numpy())
    np.testing.assert_array_equal(data.unpad(ours, 5, 11, 8), chw.numpy())


@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_profiles_agree_with_the_protocol(profile):
    shapes, protocol = SPEC.profile(profile), SPEC.protocol_for(profile)
    h, w = protocol["frame_size"]
    top, bottom, left, right = data.padding(h, w, protocol["pad_multiple"])
    assert (top, bottom) == (2, 2)  # as Sintel's 436 rows pad to 440
    assert shapes.inputs["image1"] == shapes.inputs["image2"] == (3, h + top + bottom, w + left + right)
    assert shapes.outputs["out1"] == (2, *shapes.inputs["image1"][1:])
    assert [m.name for m in SPEC.metrics] == data.metric_names(protocol["passes"])


def test_reader_on_generated_data(tmp_path):
    profile, protocol = SPEC.profile("smoke"), SPEC.protocol_for("smoke")
    SPEC.generate_dataset(tmp_path, profile, protocol)
    dataset = SPEC.open_dataset(tmp_path, profile, protocol, None, True)
    samples = list(dataset)
    assert [s.id for s in samples] == [
        "clean/gen_00/frame_0001", "clean/gen_00/frame_0002",
        "final/gen_00/frame_0001", "final/gen_00/frame_0002",
    ]
    assert len(samples) == profile.generated_samples
    for s in samples:
        for name in ("image1", "image2"):
            x = s.inputs[name]
            assert x.dtype == np.float32 and x.shape == profile.inputs[name]
            assert 0 <= x.min() and x.max() <= 255
            np.testing.assert_array_equal(x[:, 0], x[:, 2])  # replicated top rows
            np.testing.assert_array_equal(x[:, -1], x[:, -3])
        assert s.target.shape == (*protocol["frame_size"], 2)
    assert dataset.summary["read"] == 4 and not dataset.complete  # generated data never is


def test_layout_error_shows_the_tree(tmp_path):
    with pytest.raises(DatasetLayoutError, match=r"training/flow"):
        SPEC.open_dataset(tmp_path, SPEC.profile("smoke"), SPEC.protocol_for("smoke"), None)


def test_oversize_frames_are_cropped_in_smoke_only():
    frames = np.zeros((450, 1030, 3), np.uint8)
    flow = np.arange(450 * 1030 * 2, dtype=np.float32).reshape(450, 1030, 2)
    x1, _, target = data.preprocess(frames, frames, flow, (128, 160), SPEC.protocol_for("smoke"))
    assert x1.shape == (3, 128, 160)
    np.testing.assert_array_equal(target, flow[:124, :160])
    with pytest.raises(ItemUnreadable, match="450x1030 pad to 456x1032, expected the network input 440x1024"):
        data.preprocess(frames, frames, flow, (440, 1024), SPEC.protocol_for("full"))


@pytest.mark.skipif(not REAL_SINTEL.is_dir(), reason="shared MPI-Sintel sample absent")
def test_reader_on_real_sintel():
    for profile_name, frame in (("smoke", (124, 160)), ("full", (436, 1024))):
        profile, protocol = SPEC.profile(profile_name), SPEC.protocol_for(profile_name)
        dataset = SPEC.open_dataset(REAL_SINTEL, profile, protocol, 1 if profile_name == "full" else None)
        samples = list(dataset)
        assert samples[0].id == "clean/alley_1/frame_0001"
        s = samples[0]
        assert s.inputs["image1"].shape == profile.inputs["image1"]
        assert s.target.shape == (*frame, 2)
        np.testing.assert_array_equal(s.inputs["image1"][:, 0], s.inputs["image1"][:, 2])
        assert s.inputs["image1"].std() > 10 and np.abs(s.target).max() > 0.5
    assert len(list(SPEC.open_dataset(REAL_SINTEL, SPEC.profile("smoke"), SPEC.protocol_for("smoke"), None))) == 4


def _sample(sample_id: str, flow_hw2: np.ndarray) -> Sample:
    return Sample(id=sample_id, inputs={}, target=flow_hw2)


def test_scorer_unpads_and_weights_every_pixel():
    protocol = SPEC.protocol_for("smoke")
    scorer = SPEC.new_scorer(SPEC.profile("smoke"), protocol)
    h, w = 6, 8  # pads to 8x8: rows 0 and 7 of the output are padding
    gt = np.zeros((h, w, 2), np.float32)

    def output(error: np.ndarray) -> dict:
        out = np.full((2, 8, 8), 1000.0, np.float32)  # garbage where the padding is
        out[:, 1:7] = np.moveaxis(error, -1, 0)
        return {"out1": out}

    small = np.zeros((h, w, 2), np.float32)
    small[..., 0] = 0.5  # EPE 0.5 everywhere
    large = np.zeros((h, w, 2), np.float32)
    large[:3, :, 0], large[:3, :, 1] = 3.0, 4.0  # EPE 5 on half the pixels, 0 on the rest
    scorer.add(_sample("clean/a/frame_0001", gt), output(small))
    scorer.add(_sample("clean/a/frame_0002", gt), output(large))
    scorer.add(_sample("final/a/frame_0001", gt), output(large))
    result = scorer.result()
    assert set(result) == {"px1_clean", "epe_all_px_clean", "px1_final", "epe_all_px_final"}
    assert result["px1_clean"] == pytest.approx(75.0)  # 48 + 24 of 96 pixels below 1 px
    assert result["epe_all_px_clean"] == pytest.approx((48 * 0.5 + 24 * 5.0) / 96)
    assert result["px1_final"] == pytest.approx(50.0)
    assert result["epe_all_px_final"] == pytest.approx(2.5)
