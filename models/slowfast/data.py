"""Kinetics-400 validation videos as the seed preprocesses them, and a small generated stand-in.

The seed runs mmaction2's ``VideoDataset`` with the config's test pipeline (mmaction2 92e5517f
plus the port's patch to ``slowfast_r50_8x8x1_256e_kinetics400_rgb.py``):

* ``kinetics400_val_list_videos.txt``: one ``relpath label`` line per video, in file order;
  the video is ``videos_val/<relpath>``.
* ``SampleFrames(clip_len=32, frame_interval=2, num_clips=1, test_mode=True)``: with ``n``
  frames and ``L = clip_len * frame_interval``, clip ``k`` starts at
  ``int(k * a + a / 2)`` where ``a = (n - L + 1) / num_clips`` if ``n > L - 1``, else at 0;
  frame ``j`` of a clip is ``start + j * frame_interval``, taken modulo ``n`` ('loop').
* ``DecordInit`` / ``DecordDecode``: ``n`` is decord's ``len(VideoReader)``, the number of
  packets of the video stream; frames are RGB.
* ``Resize(scale=(-1, 256))``: short side to 256 keeping the ratio, each side
  ``int(side * 256 / short + 0.5)``, bilinear (``cv2.INTER_LINEAR``, mmcv's ``imresize``).
* ``CenterCrop(224)``: offsets ``(w - 224) // 2`` and ``(h - 224) // 2``.
* ``Normalize``: ``(x - mean) / std`` per RGB channel; ``FormatShape('NCTHW')``: one sample is
  ``[num_clips, 3, clip_len, 224, 224]``.

Decoding uses PyAV instead of decord: PyAV ships maintained wheels for Python 3.11 with FFmpeg
inside, decodes frame-accurately by reading the stream in order, and also writes the mp4 files
of the generated stand-in; decord has had no release since 2021. Both convert YUV to RGB with
FFmpeg's swscale: on ``demo.mp4`` PyAV's frames equal OpenCV's (its own FFmpeg) pixel for pixel;
decord's conversion flags may still move a pixel value by a step.

A video that cannot be decoded is raised as ``ItemUnreadable`` and recorded by name in the
dataset summary. The seed has no rule for it: mmaction2's test-mode dataset does not skip
items, so one unreadable video stops the seed's preprocessing, and its accuracy is over every
listed video. Here such a video is left out of top-1/top-5 and the run is marked incomplete,
so no published verdict is drawn from it.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import av
import cv2
import numpy as np

from harness.datasets import IndexedDataset, Item, ItemUnreadable, require_layout
from harness.metrics import VideoClassificationScorer
from harness.spec import DatasetLayoutError, Profile, Sample

INPUT = "video"

LAYOUT = """\
kinetics400/
├── kinetics400_val_list_videos.txt   "<relpath> <label>" per line, label 0..399
│                                     (mmaction2 tools/data/kinetics/generate_videos_filelist.sh)
├── label_map_k400.txt                class names, line i is label i
└── videos_val/
    └── <relpath>                     e.g. arm_wrestling/demo.mp4"""


def clip_indices_test_mode(total_frames: int, clip_len: int, frame_interval: int, num_clips: int) -> np.ndarray:
    """Frame indices [num_clips, clip_len] of mmaction2's ``SampleFrames`` in test mode."""
    span = clip_len * frame_interval
    avg_interval = (total_frames - span + 1) / float(num_clips)
    if total_frames > span - 1:
        starts = (np.arange(num_clips) * avg_interval + avg_interval / 2.0).astype(np.int64)
    else:
        starts = np.zeros(num_clips, dtype=np.int64)
    indices = starts[:, None] + np.arange(clip_len)[None, :] * frame_interval
    return np.mod(indices, total_frames)


def demux_video(container, path: Path) -> list:
    """The packets of the first video stream (compressed: a few MB for a Kinetics clip)."""
    if not container.streams.video:
        raise ItemUnreadable(f"{path}: no video stream")
    return list(container.demux(container.streams.video[0]))


def count_frames(packets: list) -> int:
    """decord's ``len(VideoReader)``: the packets of the video stream (the last, empty packet
    PyAV's demuxer yields only flushes the decoder)."""
    return sum(1 for packet in packets if packet.size)


def check_declared_frames(declared: int, total: int, path: Path) -> None:
    """A video holding fewer frames than its container declares is cut short (an interrupted
    copy): its clips would be sampled from what is left, another protocol than the published
    one. ``declared`` is the container's frame count (PyAV's ``stream.frames``; 0 where the
    container keeps none, e.g. a raw stream, then nothing is checked)."""
    if declared and total != declared:
        raise ItemUnreadable(f"{path}: the container declares {declared} frames, its video stream "
                             f"holds {total} (a truncated or damaged file?)")


def decode_frames(packets: list, indices: np.ndarray, path: Path) -> np.ndarray:
    """RGB uint8 frames [len(indices), H, W, 3] at these indices, decoding in stream order."""
    wanted = set(int(i) for i in indices)
    last = max(wanted)
    frames: dict[int, np.ndarray] = {}
    decoded = (frame for packet in packets for frame in packet.decode())
    for i, frame in enumerate(decoded):
        if i in wanted:
            frames[i] = frame.to_ndarray(format="rgb24")
        if i == last:
            break
    if len(frames) < len(wanted):
        raise ItemUnreadable(f"{path}: decoding stopped after frame {max(frames, default=-1)}, "
                             f"frame {last} is needed")
    return np.stack([frames[int(i)] for i in indices])


def read_clips(path: Path, protocol: dict, num_clips: int) -> np.ndarray:
    """The sampled RGB frames [num_clips * clip_len, H, W, 3] of one video, opened once: the
    packets are demuxed (their count gives the clip's indices), then decoded from memory."""
    try:
        with av.open(str(path)) as container:
            packets = demux_video(container, path)
            total = count_frames(packets)
            if total == 0:
                raise ItemUnreadable(f"{path}: the video stream has no frames")
            check_declared_frames(container.streams.video[0].frames, total, path)
            indices = clip_indices_test_mode(total, protocol["clip_len"], protocol["frame_interval"],
                                             num_clips)
            return decode_frames(packets, indices.reshape(-1), path)
    except av.FFmpegError as err:
        raise ItemUnreadable(f"{path}: {err}") from err


def resize_crop(frames: np.ndarray, protocol: dict, num_clips: int) -> np.ndarray:
    """RGB uint8 [N*T, H, W, 3] -> uint8 [N, 3, T, crop, crop] (Resize, CenterCrop): the last
    integer stage, what the sample cache stores."""
    h, w = frames.shape[1:3]
    scale = protocol["short_side"] / min(h, w)
    size = (int(w * scale + 0.5), int(h * scale + 0.5))  # mmcv rescale_size, (w, h)
    resized = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in frames])
    crop = protocol["crop_size"]
    top, left = (size[1] - crop) // 2, (size[0] - crop) // 2
    cropped = resized[:, top:top + crop, left:left + crop]
    clips = cropped.reshape((num_clips, -1) + cropped.shape[1:])  # [N, T, H, W, 3]
    return np.ascontiguousarray(clips.transpose(0, 4, 1, 2, 3))


def normalise(clips: np.ndarray, protocol: dict) -> np.ndarray:
    """uint8 [N, 3, T, H, W] -> float32 ``(x - mean) / std`` per RGB channel (Normalize)."""
    mean = np.asarray(protocol["mean"], dtype=np.float32).reshape(3, 1, 1, 1)
    std = np.asarray(protocol["std"], dtype=np.float32).reshape(3, 1, 1, 1)
    return (clips.astype(np.float32) - mean) / std


def preprocess(frames: np.ndarray, protocol: dict, num_clips: int) -> np.ndarray:
    """RGB uint8 [N*T, H, W, 3] -> float32 [N, 3, T, crop, crop] (Resize, CenterCrop, Normalize)."""
    return normalise(resize_crop(frames, protocol, num_clips), protocol)


def _load_video(item: Item, protocol: dict, num_clips: int) -> list[Sample]:
    """The resized and cropped uint8 clips (:func:`_finish` normalises them on read)."""
    frames = read_clips(item.path, protocol, num_clips)
    return [Sample(item.id, {INPUT: resize_crop(frames, protocol, num_clips)}, (item.id, item.meta))]


def _finish(sample: Sample, protocol: dict) -> Sample:
    return Sample(sample.id, {INPUT: normalise(sample.inputs[INPUT], protocol)}, sample.target)


def _check_shapes(profile: Profile, protocol: dict) -> int:
    num_clips, channels, clip_len, height, width = profile.inputs[INPUT]
    expected = (3, protocol["clip_len"], protocol["crop_size"], protocol["crop_size"])
    if (channels, clip_len, height, width) != expected:
        raise ValueError(f"input {INPUT} {profile.inputs[INPUT]} does not match the protocol's "
                         f"clip_len {protocol['clip_len']} and crop_size {protocol['crop_size']}")
    return num_clips


def read_list(path: Path, num_classes: int) -> list[tuple[str, int]]:
    """``relpath label`` lines of mmaction2's video list; labels must index the classifier."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.rsplit(None, 1)
        if len(fields) != 2 or not fields[1].isdigit() or int(fields[1]) >= num_classes:
            raise DatasetLayoutError(
                f"{path}:{number}: {line!r} is not '<relpath> <label>' with a label below "
                f"{num_classes}; expected\n{LAYOUT}")
        entries.append((fields[0], int(fields[1])))
    return entries


def open_dataset(root: Path, profile: Profile, protocol: dict, limit: int | None = None,
                 generated: bool = False) -> IndexedDataset:
    root = Path(root)
    num_clips = _check_shapes(profile, protocol)
    require_layout(root, [protocol["list_file"], protocol["videos_dir"]], LAYOUT)
    (num_classes,) = profile.outputs["class"]
    entries = read_list(root / protocol["list_file"], num_classes)
    items = [Item(rel, root / protocol["videos_dir"] / rel, label) for rel, label in entries]
    load = partial(_load_video, protocol=protocol, num_clips=num_clips)  # picklable, for worker processes
    return IndexedDataset(root, items, load, limit, generated, partial(_finish, protocol=protocol),
                          index=str(root / protocol["list_file"]))


def new_scorer(profile: Profile, protocol: dict) -> VideoClassificationScorer:
    """Top-1/top-5 in percent over videos; the exported graph already ends in a softmax."""
    return VideoClassificationScorer("class", logits=False)


# The generated stand-in: synthetic classes, one short video each.
GENERATED_FRAMES = 72  # more than clip_len * frame_interval = 64, so the test offset is 4
GENERATED_FPS = 25
GENERATED_LABELS = (0, 137, 274, 399)  # spread over the 400 outputs, both ends included
VELOCITIES = ((2.0, 0.0), (0.0, 2.0), (1.5, 1.5), (-2.0, 1.0))  # pixels per frame, per video
MARKER = 16  # frame index in binary: 8 black/white macroblocks, 2 rows of 4, at the top left


def generated_class_name(label: int) -> str:
    return f"synthetic_class_{label:03d}"


def _frame(video: int, index: int, height: int, width: int) -> np.ndarray:
    """An RGB frame: a texture moving at a per-video velocity, and the frame-index marker."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    vx, vy = VELOCITIES[video % len(VELOCITIES)]
    dx, dy = vx * index, vy * index
    a = np.sin(2 * np.pi * (x - dx) / (10.0 + 4 * (video % 16)))
    b = np.cos(2 * np.pi * (y - dy) / (14.0 + 3 * (video % 16)))
    rgb = np.stack([128 + 90 * a, 128 + 70 * b, 128 + 60 * a * b], axis=-1)
    for bit in range(8):  # what the sampled frame indices are checked against
        row, col = divmod(bit, 4)
        rgb[row * MARKER:(row + 1) * MARKER, col * MARKER:(col + 1) * MARKER] = 255 * (index >> bit & 1)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def read_marker(frame: np.ndarray) -> int:
    """The frame index a generated RGB frame carries (block centres, so codec blur does not matter)."""
    index = 0
    for bit in range(8):
        row, col = divmod(bit, 4)
        y, x = row * MARKER + MARKER // 2, col * MARKER + MARKER // 2
        index |= int(frame[y - 4:y + 4, x - 4:x + 4].mean() > 127) << bit
    return index


def write_video(path: Path, frames: np.ndarray, fps: int = GENERATED_FPS) -> None:
    """Encode RGB uint8 [T, H, W, 3] as MPEG-4 Part 2 in mp4 (FFmpeg's own encoder, one thread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1  # so that every run writes identical bytes
        stream.codec_context.options = {"qscale": "2"}
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))


def generate(root: Path, profile: Profile, protocol: dict) -> None:
    """Write ``profile.generated_samples`` 72-frame 4:3 videos, the list and a label map.

    Frames are a little larger than the short side (so that resizing and cropping both act);
    the label map names 400 synthetic classes.
    """
    root = Path(root)
    (num_classes,) = profile.outputs["class"]
    height = protocol["short_side"] + protocol["short_side"] // 8
    width = (height * 4 // 3) // 2 * 2  # yuv420p needs even sides
    lines = []
    for video in range(profile.generated_samples):  # the labels again beyond 4 (a benchmark's hundreds)
        label = GENERATED_LABELS[video % len(GENERATED_LABELS)]
        rel = f"{generated_class_name(label)}/generated_{video:03d}.mp4"
        frames = np.stack([_frame(video, i, height, width) for i in range(GENERATED_FRAMES)])
        write_video(root / protocol["videos_dir"] / rel, frames)
        lines.append(f"{rel} {label}")
    (root / protocol["list_file"]).write_text("\n".join(lines) + "\n")
    names = [generated_class_name(i) for i in range(num_classes)]
    (root / protocol["label_map"]).write_text("\n".join(names) + "\n")
