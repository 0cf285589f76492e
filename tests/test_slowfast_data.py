"""SlowFast's Kinetics-400 reader: mmaction2's test sampling and transforms, generated and real videos."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from harness.registry import get
from harness.spec import DatasetLayoutError, Sample
from models.slowfast import data

SPEC = get("slowfast")
SMOKE = SPEC.profile("smoke")
SMOKE_PROTOCOL = SPEC.protocol_for("smoke")
FULL_PROTOCOL = SPEC.protocol_for("full")
REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / SPEC.dataset_dir
DEMO = "arm_wrestling/demo.mp4"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kinetics400")
    data.generate(root, SMOKE, SMOKE_PROTOCOL)
    return root


def test_test_mode_sampling_by_hand():
    # n > 63: start int((n - 64 + 1) / 2), then every 2nd frame
    assert data.clip_indices_test_mode(280, 32, 2, 1).tolist() == [list(range(108, 172, 2))]
    assert data.clip_indices_test_mode(72, 32, 2, 1)[0, [0, -1]].tolist() == [4, 66]
    assert data.clip_indices_test_mode(64, 32, 2, 1)[0, 0] == 0  # int(0.5)
    # n <= 63: start 0 and wrap around ('loop')
    short = data.clip_indices_test_mode(40, 32, 2, 1)[0]
    assert short.tolist() == list(range(0, 40, 2)) + list(range(0, 24, 2))
    # several clips: starts int(k * a + a / 2), a = 37 / 3
    assert data.clip_indices_test_mode(100, 32, 2, 3)[:, 0].tolist() == [6, 18, 30]


def test_preprocess_resize_crop_normalise_by_hand():
    h, w = 64, 96  # short side already 64: the resize keeps every pixel
    column = np.broadcast_to(np.arange(w, dtype=np.uint8)[None, :, None], (h, w, 3))
    frames = np.stack([column] * 4)
    out = data.preprocess(frames, {**SMOKE_PROTOCOL, "clip_len": 4}, num_clips=1)
    assert out.shape == (1, 3, 4, 56, 56) and out.dtype == np.float32
    mean, std = np.asarray(SMOKE_PROTOCOL["mean"]), np.asarray(SMOKE_PROTOCOL["std"])
    left = (w - 56) // 2
    np.testing.assert_allclose(out[0, :, 0, 0, 0], (left - mean) / std, rtol=1e-6)
    np.testing.assert_allclose(out[0, :, 0, 0, -1], (left + 55 - mean) / std, rtol=1e-6)
    # mean-coloured frames normalise to zero
    flat = np.broadcast_to(np.asarray([124, 116, 104], np.uint8), (2, 80, 100, 3))
    np.testing.assert_allclose(data.preprocess(flat, {**SMOKE_PROTOCOL, "mean": (124, 116, 104)}, 1), 0)


def test_short_side_rounding_follows_mmcv():
    # 340x256 to short side 64: (85, 64); 96x72: int(85.33 + 0.5) = 85, int(64 + 0.5) = 64
    for h, w in ((256, 340), (72, 96)):
        frames = np.zeros((1, h, w, 3), np.uint8)
        protocol = {**SMOKE_PROTOCOL, "clip_len": 1, "crop_size": 64}
        assert data.preprocess(frames, protocol, 1).shape == (1, 3, 1, 64, 64)


def test_generated_dataset(generated):
    lines = (generated / "kinetics400_val_list_videos.txt").read_text().splitlines()
    assert lines == ["synthetic_class_000/generated_000.mp4 0", "synthetic_class_137/generated_001.mp4 137",
                     "synthetic_class_274/generated_002.mp4 274"]
    assert len((generated / "label_map_k400.txt").read_text().splitlines()) == 400
    dataset = SPEC.open_dataset(generated, SMOKE, SMOKE_PROTOCOL, None, True)
    samples = list(dataset)
    assert [s.id for s in samples] == [line.split()[0] for line in lines]
    assert [s.target for s in samples] == [(s.id, int(line.split()[1])) for s, line in zip(samples, lines)]
    for sample in samples:
        video = sample.inputs["video"]
        assert video.shape == SMOKE.inputs["video"] and video.dtype == np.float32
        assert np.isfinite(video).all() and video.std() > 0.3
    assert dataset.summary["read"] == 3 and not dataset.summary["failed"]
    assert not dataset.complete  # generated data never counts as the whole dataset


def test_generated_videos_are_deterministic(generated, tmp_path):
    data.generate(tmp_path, SMOKE, SMOKE_PROTOCOL)
    for video in (generated / "videos_val").rglob("*.mp4"):
        assert (tmp_path / video.relative_to(generated)).read_bytes() == video.read_bytes()


def packet_count(video) -> int:
    with av.open(str(video)) as container:
        return data.count_frames(data.demux_video(container, video))


def test_sampled_frames_are_the_right_ones(generated):
    # each generated frame carries its index in binary; 72 frames: start int(9 / 2) = 4
    video = generated / "videos_val" / "synthetic_class_137/generated_001.mp4"
    assert packet_count(video) == data.GENERATED_FRAMES
    frames = data.read_clips(video, SMOKE_PROTOCOL, num_clips=1)
    assert [data.read_marker(f) for f in frames] == list(range(4, 68, 2))


def test_unreadable_videos_are_recorded_by_name(generated, tmp_path):
    root = tmp_path / "kinetics400"
    good = "synthetic_class_000/generated_000.mp4"
    source = (generated / "videos_val" / good).read_bytes()
    for rel, payload in ((good, source), ("broken/garbage.mp4", b"\x00not a video" * 100),
                         ("broken/truncated.mp4", source[: len(source) // 2])):
        (root / "videos_val" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "videos_val" / rel).write_bytes(payload)
    (root / "kinetics400_val_list_videos.txt").write_text(
        f"{good} 0\nbroken/garbage.mp4 1\nbroken/truncated.mp4 2\nabsent/video.mp4 3\n")
    dataset = SPEC.open_dataset(root, SMOKE, SMOKE_PROTOCOL, None, False)
    assert [s.id for s in dataset] == [good]
    summary = dataset.summary
    assert set(summary["failed"]) == {"broken/garbage.mp4", "broken/truncated.mp4"}
    assert all("videos_val/broken/" in reason for reason in summary["failed"].values())
    assert summary["missing_names"] == ["absent/video.mp4"]
    assert summary["read"] == 1 and not dataset.complete


def test_layout_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="kinetics400_val_list_videos.txt"):
        SPEC.open_dataset(tmp_path, SMOKE, SMOKE_PROTOCOL, None, False)
    (tmp_path / "videos_val").mkdir()
    (tmp_path / "kinetics400_val_list_videos.txt").write_text("a/b.mp4 400\n")
    with pytest.raises(DatasetLayoutError, match=r"kinetics400_val_list_videos.txt:1: 'a/b.mp4 400'"):
        SPEC.open_dataset(tmp_path, SMOKE, SMOKE_PROTOCOL, None, False)


def test_scorer_top1_top5_by_hand():
    scorer = SPEC.new_scorer(SMOKE, SMOKE_PROTOCOL)
    probs = np.full((3, 400), 1e-4)
    probs[0, 7] = 0.9  # label 7 first
    probs[1, [3, 4, 5, 6, 8]] = [0.5, 0.4, 0.3, 0.2, 0.1]  # label 8 fifth
    probs[2, 9] = 0.9  # label 10 below the top five
    for i, label in enumerate((7, 8, 10)):
        scorer.add(Sample(f"v{i}", {}, (f"v{i}", label)), {"class": probs[i]})
    result = scorer.result()
    assert set(result) == {m.name for m in SPEC.metrics}
    assert result["top1"] == pytest.approx(100 / 3)
    assert result["top5"] == pytest.approx(200 / 3)


@pytest.mark.skipif(not REAL.exists(), reason=f"{REAL} absent")
def test_real_demo_video():
    video = REAL / "videos_val" / DEMO
    assert packet_count(video) == 280
    dataset = SPEC.open_dataset(REAL, SPEC.profile("full"), FULL_PROTOCOL, None, False)
    (sample,) = list(dataset)
    assert sample.id == DEMO and sample.target == (DEMO, 6)
    clip = sample.inputs["video"]
    assert clip.shape == (1, 3, 32, 224, 224) and np.isfinite(clip).all()
    assert dataset.complete
    # frame-accurate: PyAV's frames 108..170 are OpenCV's (its own FFmpeg) frames at those indices
    frames = data.read_clips(video, FULL_PROTOCOL, num_clips=1)
    capture = cv2.VideoCapture(str(video))
    reference = []
    for index in range(171):
        ok, bgr = capture.read()
        assert ok
        if index >= 108 and index % 2 == 0:
            reference.append(bgr[..., ::-1])
    capture.release()
    diff = np.abs(frames.astype(np.int16) - np.stack(reference).astype(np.int16))
    assert diff.mean() < 1.0  # 0.0 measured; the neighbouring frames differ by 7.8


def test_a_video_holding_fewer_frames_than_its_container_declares_is_unreadable(tmp_path):
    from harness.datasets import ItemUnreadable

    data.check_declared_frames(72, 72, tmp_path / "v.mp4")
    data.check_declared_frames(0, 40, tmp_path / "v.mp4")  # a container that declares none
    with pytest.raises(ItemUnreadable, match=r"v.mp4: the container declares 72 frames, its video stream holds 40"):
        data.check_declared_frames(72, 40, tmp_path / "v.mp4")
