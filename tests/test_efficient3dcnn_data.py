"""UCF101 rawframes reader, upstream's test-time clip cutting and transforms, generated videos, scorer."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.registry import get
from harness.spec import DatasetLayoutError, Sample
from models.efficient3dcnn.data import clip_frame_indices, preprocess_frame

SPEC = get("efficient3dcnn")
SMOKE = SPEC.profile("smoke")
FULL = SPEC.profile("full")
PROTOCOL = SPEC.protocol_for("smoke")
MEAN = np.array(PROTOCOL["mean"], dtype=np.float32)
REAL_UCF101 = Path(__file__).resolve().parents[2] / "shared" / "data" / "UCF101"
REAL_VIDEO = "v_ApplyEyeMakeup_g01_c01"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ucf101")
    SPEC.generate_dataset(root, SMOKE, PROTOCOL)
    return root


def test_clips_are_cut_as_upstream_test_set():
    # get_test_set: clips start at 1, 17, ... < n_frames; the short last one is loop-padded
    clips = clip_frame_indices(164, 16)
    assert len(clips) == 11
    assert clips[0] == list(range(1, 17)) and clips[9] == list(range(145, 161))
    assert clips[10] == [161, 162, 163, 164] * 4
    assert clip_frame_indices(5, 16) == [[1, 2, 3, 4, 5] * 3 + [1]]
    assert clip_frame_indices(32, 16) == [list(range(1, 17)), list(range(17, 33))]
    # range(1, n_frames, 16) makes no clip starting at the last frame: frame 33 is never seen
    assert clip_frame_indices(33, 16) == [list(range(1, 17)), list(range(17, 33))]
    assert clip_frame_indices(1, 16) == []


def test_frame_transform_resizes_crops_and_subtracts_mean():
    flat = Image.new("RGB", (320, 240), (120, 110, 100))
    out = preprocess_frame(flat, PROTOCOL, 112)
    assert out.shape == (3, 112, 112) and out.dtype == np.float32
    expected = np.array([120, 110, 100], np.float32) - MEAN
    np.testing.assert_allclose(out, np.broadcast_to(expected[:, None, None], out.shape))


def test_centre_crop_offset_rounds_half_to_even():
    # columns numbered by value; the shorter side already matches, so only the crop acts
    for width, first in ((149, 18), (151, 20)):  # round(18.5) == 18, round(19.5) == 20
        ramp = np.repeat(np.arange(width, dtype=np.uint8)[None, :, None], 3, axis=2)
        ramp = np.repeat(ramp, 112, axis=0)
        out = preprocess_frame(Image.fromarray(ramp), PROTOCOL, 112)
        assert out[0, 0, 0] + MEAN[0] == pytest.approx(first)
        assert out[0, 0, -1] + MEAN[0] == pytest.approx(first + 111)


def test_shorter_side_scaled_with_pil_bilinear_and_longer_truncated():
    rng = np.random.default_rng(0)
    frame = Image.fromarray(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    out = preprocess_frame(frame, PROTOCOL, 112)
    scaled = np.asarray(frame.resize((149, 112), Image.BILINEAR), dtype=np.float32)  # int(112*4/3)
    np.testing.assert_array_equal(out, (scaled[:, 18:130] - MEAN).transpose(2, 0, 1))
    portrait = Image.fromarray(rng.integers(0, 256, (320, 240, 3), dtype=np.uint8))
    scaled = np.asarray(portrait.resize((112, 149), Image.BILINEAR), dtype=np.float32)
    np.testing.assert_array_equal(preprocess_frame(portrait, PROTOCOL, 112),
                                  (scaled[18:130] - MEAN).transpose(2, 0, 1))


def test_generated_videos_read_as_clips(generated):
    dataset = SPEC.open_dataset(generated, SMOKE, PROTOCOL, None, True)
    samples = list(dataset)
    summary = dataset.summary
    assert summary["listed"] == SMOKE.generated_samples == 3  # the 'training' entry is not listed
    assert summary["read"] == 3 and summary["samples"] == 7 and not summary["failed"]
    assert not dataset.complete  # generated data never counts as the whole dataset
    assert [s.id for s in samples] == [
        "v_ApplyEyeMakeup_g01_c01/clip0", "v_ApplyEyeMakeup_g01_c01/clip1",
        "v_Archery_g01_c01/clip0", "v_Archery_g01_c01/clip1",
        "v_Biking_g01_c01/clip0", "v_Biking_g01_c01/clip1", "v_Biking_g01_c01/clip2",
    ]
    labels = json.loads((generated / PROTOCOL["annotation"]).read_text())["labels"]
    assert labels == ["ApplyEyeMakeup", "Archery", "Biking"]
    assert [s.target for s in samples[::2]] == [
        ("v_ApplyEyeMakeup_g01_c01", 0), ("v_Archery_g01_c01", 1), ("v_Biking_g01_c01", 2),
        ("v_Biking_g01_c01", 2)]
    for s in samples:
        assert s.inputs["image"].shape == SMOKE.inputs["image"] and s.inputs["image"].dtype == np.float32
    clip = samples[1].inputs["image"]  # frames 17..20 of a 20-frame video, loop-padded
    np.testing.assert_array_equal(clip[:, 4:8], clip[:, 0:4])
    assert not np.array_equal(clip[:, 0], clip[:, 1])  # the texture moves
    assert clip.min() >= -MEAN.max() and clip.max() <= 255 - MEAN.min()


def test_generation_is_deterministic(generated, tmp_path):
    SPEC.generate_dataset(tmp_path, SMOKE, PROTOCOL)
    first = sorted(p.relative_to(generated) for p in generated.rglob("*") if p.is_file())
    again = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert first == again
    assert all((generated / p).read_bytes() == (tmp_path / p).read_bytes() for p in first)


def test_root_without_layout_shows_expected_tree(tmp_path):
    with pytest.raises(DatasetLayoutError) as err:
        SPEC.open_dataset(tmp_path, SMOKE, PROTOCOL, None, False)
    message = str(err.value)
    assert "annotation/ucf101_01.json" in message and "rawframes" in message
    assert "image_00001.jpg" in message and "n_frames" in message


def test_absent_and_broken_videos_are_recorded(tmp_path):
    root = tmp_path / "UCF101"
    SPEC.generate_dataset(root, SMOKE, PROTOCOL)
    (root / "rawframes/Archery/v_Archery_g01_c01/image_00007.jpg").unlink()
    for f in (root / "rawframes/Biking/v_Biking_g01_c01").iterdir():
        f.unlink()
    (root / "rawframes/Biking/v_Biking_g01_c01").rmdir()
    dataset = SPEC.open_dataset(root, SMOKE, PROTOCOL, None, False)
    assert [s.id for s in dataset] == ["v_ApplyEyeMakeup_g01_c01/clip0", "v_ApplyEyeMakeup_g01_c01/clip1"]
    assert dataset.missing == ["v_Biking_g01_c01"]
    assert "image_00007.jpg missing" in dataset.failed["v_Archery_g01_c01"]
    assert not dataset.complete


def test_scorer_averages_clip_softmaxes_per_video():
    scorer = SPEC.new_scorer(SMOKE, PROTOCOL)
    base = np.full(101, -20.0, dtype=np.float32)

    def logits(**values):
        out = base.copy()
        for index, value in values.items():
            out[int(index[1:])] = value
        return out

    def add(video, label, clip, out):
        scorer.add(Sample(f"{video}/clip{clip}", {}, (video, label)), {"class": out})

    # class 1 wins on mean softmax (0.49 vs 0.37) although its mean logit is far lower
    add("a", 1, 0, logits(c0=1.0, c1=5.0, c2=0.0))
    add("a", 1, 1, logits(c0=1.0, c1=-100.0, c2=0.0))
    # label 7 is third of video b: a top-5 hit, a top-1 miss
    add("b", 7, 0, logits(c3=9.0, c4=8.0, c7=7.0))
    result = scorer.result()
    assert set(result) == {m.name for m in SPEC.metrics}
    assert result == {"top1": 50.0, "top5": 100.0}


@pytest.mark.skipif(not REAL_UCF101.is_dir(), reason=f"{REAL_UCF101} absent")
def test_real_rawframes_clip():
    protocol = SPEC.protocol_for("full")
    dataset = SPEC.open_dataset(REAL_UCF101, FULL, protocol, None, False)
    samples = list(dataset)
    summary = dataset.summary
    assert summary["listed"] == 3783  # split 1's validation videos, in json order
    assert summary["read"] == 1 and summary["missing"] == 3782 and not dataset.complete
    assert dataset.items[0].id == REAL_VIDEO  # the first validation entry
    assert len(samples) == 11  # 164 frames
    assert {s.target for s in samples} == {(REAL_VIDEO, 0)}  # ApplyEyeMakeup is labels[0]
    assert samples[-1].id == f"{REAL_VIDEO}/clip10"
    frames = REAL_UCF101 / "rawframes" / "ApplyEyeMakeup" / REAL_VIDEO
    with Image.open(frames / "image_00161.jpg") as img:
        first = preprocess_frame(img.convert("RGB"), protocol, 112)
    last = samples[-1].inputs["image"]
    assert last.shape == (3, 16, 112, 112)
    np.testing.assert_array_equal(last[:, 0], first)
    np.testing.assert_array_equal(last[:, 4], first)  # loop padding of frames 161..164
