"""The readers' float32 preprocessing as it was before the compact sample cache (commit c48c535):
each model's whole chain in float, SlowFast's video opened twice (a frame-count demux, then the
decode). tests/test_samples_cache.py compares the stored-then-finished samples with these, to 0.

Test helpers only: the readers' own code is in models/<name>/data.py.
"""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from harness.sintel import load_pair
from harness.spec import Sample
from models.efficient3dcnn.data import FRAME_PATTERN, N_FRAMES_FILE, clip_frame_indices
from models.flavr.data import INPUT_FRAMES, TARGET_FRAME, center_crop
from models.gma.data import padding
from models.slowfast.data import clip_indices_test_mode


def efficient3dcnn(item, profile, protocol) -> list[Sample]:
    video_id, label = item.meta
    _, duration, size, _ = profile.inputs["image"]
    n_frames = int(float((item.path / N_FRAMES_FILE).read_text().strip()))
    frames, samples = {}, []
    for k, indices in enumerate(clip_frame_indices(n_frames, duration)):
        for i in indices:
            if i not in frames:
                with Image.open(item.path / FRAME_PATTERN.format(i)) as img:
                    image = img.convert("RGB")
                target = int(size / protocol["scale_in_test"])
                w, h = image.size
                if min(w, h) != target:
                    image = image.resize((target, int(target * h / w)) if w < h else (int(target * w / h), target),
                                         Image.BILINEAR)
                w, h = image.size
                left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
                image = image.crop((left, top, left + size, top + size))
                pixels = np.asarray(image, dtype=np.float32) / protocol["norm_value"]
                frames[i] = (pixels - np.asarray(protocol["mean"], dtype=np.float32)).transpose(2, 0, 1)
        samples.append(Sample(f"{video_id}/clip{k}", {"image": np.stack([frames[i] for i in indices], axis=1)},
                              (video_id, label)))
    return samples


def flavr(item, profile, protocol) -> list[Sample]:
    def frame(path: Path) -> np.ndarray:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
        cropped = center_crop(rgb, tuple(protocol["crop_hw"]))
        return np.ascontiguousarray(cropped.transpose(2, 0, 1)).astype(np.float32) / np.float32(255)

    inputs = dict(zip(profile.inputs, (frame(item.path / name) for name in INPUT_FRAMES)))
    return [Sample(item.id, inputs, frame(item.path / TARGET_FRAME))]


def flownet2(item, profile, protocol) -> list[Sample]:
    img1, img2, flow = load_pair(item)
    height, width = profile.inputs["x1"][1:]
    if img1.shape[0] > height or img1.shape[1] > width:  # protocol 'crop' (smoke)
        img1, img2, flow = img1[:height, :width], img2[:height, :width], flow[:height, :width]
    h, w = img1.shape[:2]
    frames = np.zeros((2, height, width, 3), np.float64)
    frames[0, :h, :w], frames[1, :h, :w] = img1, img2
    frames -= frames.mean(axis=(0, 1, 2))
    frames /= protocol["rgb_max"]
    x = np.ascontiguousarray(frames.transpose(0, 3, 1, 2), np.float32)
    return [Sample(item.id, {"x1": x[0], "x2": x[1]}, flow)]


def gma(item, profile, protocol) -> list[Sample]:
    img1, img2, flow = load_pair(item)
    height, width = protocol["frame_size"]
    if protocol["oversize"] == "crop" and (img1.shape[0] > height or img1.shape[1] > width):
        img1, img2, flow = img1[:height, :width], img2[:height, :width], flow[:height, :width]

    def pad(rgb):
        top, bottom, left, right = padding(*rgb.shape[:2], protocol["pad_multiple"])
        padded = np.pad(rgb, ((top, bottom), (left, right), (0, 0)), mode="edge")
        return np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32)

    return [Sample(item.id, {"image1": pad(img1), "image2": pad(img2)}, flow)]


def slowfast(item, profile, protocol) -> list[Sample]:
    num_clips = profile.inputs["video"][0]
    with av.open(str(item.path)) as container:
        total = sum(1 for p in container.demux(container.streams.video[0]) if p.size)
    indices = clip_indices_test_mode(total, protocol["clip_len"], protocol["frame_interval"], num_clips).reshape(-1)
    wanted, frames = set(int(i) for i in indices), {}
    with av.open(str(item.path)) as container:
        for i, frame in enumerate(container.decode(container.streams.video[0])):
            if i in wanted:
                frames[i] = frame.to_ndarray(format="rgb24")
            if i == max(wanted):
                break
    decoded = np.stack([frames[int(i)] for i in indices])
    h, w = decoded.shape[1:3]
    scale = protocol["short_side"] / min(h, w)
    size = (int(w * scale + 0.5), int(h * scale + 0.5))
    resized = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in decoded])
    crop = protocol["crop_size"]
    top, left = (size[1] - crop) // 2, (size[0] - crop) // 2
    cropped = resized[:, top:top + crop, left:left + crop].astype(np.float32)
    normalised = (cropped - np.asarray(protocol["mean"], dtype=np.float32)) / np.asarray(protocol["std"], dtype=np.float32)
    clips = normalised.reshape((num_clips, -1) + normalised.shape[1:])
    return [Sample(item.id, {"video": np.ascontiguousarray(clips.transpose(0, 4, 1, 2, 3))}, (item.id, item.meta))]


FLOAT32_PATH = {"efficient3dcnn": efficient3dcnn, "flavr": flavr, "flownet2": flownet2, "gma": gma,
                "slowfast": slowfast}
