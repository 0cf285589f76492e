"""MPI-Sintel for FlowNet2 as the seed's Flownet2_preprocess.py / postprocess prepare it.

Preprocessing (outside the ONNX graph): both frames are zero-padded at the bottom and right
to the network's input size (436x1024 -> 448x1024), the per-channel mean over both padded
frames is subtracted and the result divided by ``rgb_max`` (255). The padded uint8 frames are
what the sample cache stores; the mean and the division are done when a sample is read. Scoring
crops the output back to the ground truth's size and averages the per-image mean end-point error.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from harness.datasets import IndexedDataset, Item, ItemUnreadable
from harness.sintel import FlowScorer, generate_sintel, list_pairs, load_pair
from harness.spec import Profile, Sample

OUTPUT = "flow"


def pad(
    img1: np.ndarray, img2: np.ndarray, flow: np.ndarray, size: tuple[int, int], protocol: Mapping
) -> tuple[np.ndarray, np.ndarray]:
    """HxWx3 uint8 RGB frames -> both zero-padded to ``size``, uint8 [2, *size, 3] (the last
    integer stage, what the sample cache stores), and the flow the output is scored on.

    A frame larger than ``size`` is an error, or with ``protocol['oversize'] == 'crop'``
    (smoke profile on real frames only) cropped from the top-left together with its flow.
    """
    height, width = size
    h, w = img1.shape[:2]
    if h > height or w > width:
        if protocol["oversize"] != "crop":
            raise ItemUnreadable(
                f"frames of {h}x{w} are larger than the network input {height}x{width}"
            )
        img1, img2, flow = img1[:height, :width], img2[:height, :width], flow[:height, :width]
        h, w = img1.shape[:2]
    frames = np.zeros((2, height, width, 3), np.uint8)
    frames[0, :h, :w], frames[1, :h, :w] = img1, img2
    return frames, flow


def normalise(frames: np.ndarray, protocol: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Padded uint8 [2, H, W, 3] -> (x1, x2) float32 [3, H, W]: minus the per-channel mean over
    both padded frames (the padding included, as the seed pads first), divided by rgb_max."""
    frames = frames.astype(np.float64)
    frames -= frames.mean(axis=(0, 1, 2))
    frames /= protocol["rgb_max"]
    x = np.ascontiguousarray(frames.transpose(0, 3, 1, 2), np.float32)
    return x[0], x[1]


def preprocess(
    img1: np.ndarray, img2: np.ndarray, flow: np.ndarray, size: tuple[int, int], protocol: Mapping
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HxWx3 uint8 RGB frames -> (x1, x2) [3, *size] float32, and the flow the output is scored on."""
    frames, flow = pad(img1, img2, flow, size, protocol)
    return (*normalise(frames, protocol), flow)


def open_dataset(
    root: Path, profile: Profile, protocol: dict, limit: int | None, generated: bool = False
) -> IndexedDataset:
    items = list_pairs(Path(root), protocol["passes"])
    load = partial(_load, size=tuple(profile.inputs["x1"][1:]), protocol=protocol)  # picklable
    return IndexedDataset(root, items, load, limit=limit, generated=generated,
                          finish=partial(_finish, protocol=protocol))


def _load(item: Item, size: tuple[int, int], protocol: Mapping) -> Iterator[Sample]:
    """Both padded uint8 frames in one array (:func:`_finish` normalises them on read)."""
    img1, img2, flow = load_pair(item)
    frames, target = pad(img1, img2, flow, size, protocol)
    yield Sample(id=item.id, inputs={"frames": frames}, target=target)


def _finish(sample: Sample, protocol: Mapping) -> Sample:
    x1, x2 = normalise(sample.inputs["frames"], protocol)
    return Sample(sample.id, {"x1": x1, "x2": x2}, sample.target)


def generate(root: Path, profile: Profile, protocol: dict) -> None:
    generate_sintel(
        Path(root),
        size=tuple(protocol["generated_size"]),
        pairs_per_pass=profile.generated_samples,
        passes=protocol["passes"],
        seed=protocol["generated_seed"],
    )


def metric_names(passes) -> list[str]:
    return [f"{m}_{p}" for p in passes for m in ("epe", "px1", "px3", "px5")]


class FlowNet2Scorer:
    """The seed's scoring: output cropped to the ground truth (undoes the bottom/right padding),
    EPE per image averaged over images, plus the share of pixels within 1/3/5 px (percent)."""

    def __init__(self, passes):
        self._names = metric_names(passes)
        self._inner = FlowScorer(OUTPUT, crop=None, passes=passes)

    def add(self, sample: Sample, outputs: Mapping[str, np.ndarray]) -> None:
        h, w = np.shape(sample.target)[:2]
        self._inner.add(sample, {OUTPUT: np.asarray(outputs[OUTPUT])[:, :h, :w]})

    def result(self) -> dict[str, float]:
        scores = self._inner.result()
        return {name: scores[name] for name in self._names}


def new_scorer(profile: Profile, protocol: dict) -> FlowNet2Scorer:
    return FlowNet2Scorer(protocol["passes"])
