"""MPI-Sintel for GMA as the seed's GMA_preprocess.py / GMA_postprocess.py prepare it.

Preprocessing (outside the ONNX graph): each frame goes in as raw 0-255 RGB, CHW float32,
replicate-padded to a multiple of 8 the way upstream's ``InputPadder(mode='sintel')`` pads
(split evenly between top and bottom, left and right: 436x1024 -> 440x1024). Scoring removes
that padding again and, per pass, counts every pixel of every pair alike: the share of pixels
with end-point error below 1 px (``px1_<pass>``, percent) and the mean EPE over all pixels
(``epe_all_px_<pass>``).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from harness.datasets import IndexedDataset, Item, ItemUnreadable
from harness.sintel import FlowScorer, generate_sintel, list_pairs, load_pair
from harness.spec import Profile, Sample

INPUTS = ("image1", "image2")
OUTPUT = "out1"
REPORTED = ("px1", "epe_all_px")  # FlowScorer's metrics this model declares, per pass


def padding(height: int, width: int, multiple: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) rows/columns that InputPadder('sintel') adds."""
    pad_h, pad_w = -height % multiple, -width % multiple
    return pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2


def pad_pixels(rgb: np.ndarray, multiple: int) -> np.ndarray:
    """HxWx3 uint8 -> uint8 [3, H', W'], edge-replicated to multiples of ``multiple``."""
    top, bottom, left, right = padding(*rgb.shape[:2], multiple)
    padded = np.pad(rgb, ((top, bottom), (left, right), (0, 0)), mode="edge")
    return np.ascontiguousarray(padded.transpose(2, 0, 1))


def pad_frame(rgb: np.ndarray, multiple: int) -> np.ndarray:
    """HxWx3 uint8 -> [3, H', W'] float32 0-255, edge-replicated to multiples of ``multiple``."""
    return pad_pixels(rgb, multiple).astype(np.float32)


def unpad(flow: np.ndarray, height: int, width: int, multiple: int) -> np.ndarray:
    """[2, H', W'] network output -> [2, height, width]: InputPadder.unpad."""
    top, bottom, left, right = padding(height, width, multiple)
    return flow[:, top : flow.shape[1] - bottom, left : flow.shape[2] - right]


def crop_and_pad(
    img1: np.ndarray,
    img2: np.ndarray,
    flow: np.ndarray,
    input_hw: tuple[int, int],
    protocol: Mapping,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames -> (image1, image2) uint8 [3, *input_hw] and the flow [H, W, 2] the output is
    scored on: the last integer stage (what the sample cache stores).

    With ``protocol['oversize'] == 'crop'`` (smoke profile on real frames) frames larger than
    ``protocol['frame_size']`` are cropped from the top-left together with their flow first.
    """
    multiple = protocol["pad_multiple"]
    height, width = protocol["frame_size"]
    if protocol["oversize"] == "crop" and (img1.shape[0] > height or img1.shape[1] > width):
        img1, img2, flow = img1[:height, :width], img2[:height, :width], flow[:height, :width]
    x1, x2 = pad_pixels(img1, multiple), pad_pixels(img2, multiple)
    if x1.shape[1:] != tuple(input_hw):
        h, w = img1.shape[:2]
        raise ItemUnreadable(
            f"frames of {h}x{w} pad to {x1.shape[1]}x{x1.shape[2]}, expected the network input "
            f"{input_hw[0]}x{input_hw[1]}"
        )
    return x1, x2, flow


def preprocess(
    img1: np.ndarray,
    img2: np.ndarray,
    flow: np.ndarray,
    input_hw: tuple[int, int],
    protocol: Mapping,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames -> (image1, image2) float32 0-255 [3, *input_hw] and the flow [H, W, 2]."""
    x1, x2, flow = crop_and_pad(img1, img2, flow, input_hw, protocol)
    return x1.astype(np.float32), x2.astype(np.float32), flow


def open_dataset(
    root: Path, profile: Profile, protocol: dict, limit: int | None, generated: bool = False
) -> IndexedDataset:
    items = list_pairs(Path(root), protocol["passes"])
    load = partial(_load, input_hw=tuple(profile.inputs[INPUTS[0]][1:]), protocol=protocol)  # picklable
    return IndexedDataset(root, items, load, limit=limit, generated=generated, finish=_finish)


def _load(item: Item, input_hw: tuple[int, int], protocol: Mapping) -> Iterator[Sample]:
    """The padded uint8 frames (:func:`_finish` makes them float on read) and the flow."""
    img1, img2, flow = load_pair(item)
    x1, x2, target = crop_and_pad(img1, img2, flow, input_hw, protocol)
    yield Sample(id=item.id, inputs={INPUTS[0]: x1, INPUTS[1]: x2}, target=target)


def _finish(sample: Sample) -> Sample:
    return Sample(sample.id, {n: a.astype(np.float32) for n, a in sample.inputs.items()}, sample.target)


def generate(root: Path, profile: Profile, protocol: dict) -> None:
    """``profile.generated_samples`` pairs in all, split evenly over the passes."""
    passes = protocol["passes"]
    generate_sintel(
        Path(root),
        size=tuple(protocol["frame_size"]),
        pairs_per_pass=max(1, profile.generated_samples // len(passes)),
        passes=passes,
        seed=protocol["generated_seed"],
    )


def metric_names(passes: Sequence[str]) -> list[str]:
    return [f"{m}_{p}" for p in passes for m in REPORTED]


class GMAScorer:
    """GMA_postprocess.py's evaluation: unpad, then pixel-weighted EPE statistics per pass."""

    def __init__(self, passes: Sequence[str], multiple: int):
        self._names = metric_names(passes)
        self._multiple = multiple
        self._inner = FlowScorer(OUTPUT, crop=None, passes=passes)

    def add(self, sample: Sample, outputs: Mapping[str, np.ndarray]) -> None:
        h, w = np.shape(sample.target)[:2]
        flow = unpad(np.asarray(outputs[OUTPUT]), h, w, self._multiple)
        self._inner.add(sample, {OUTPUT: flow})

    def result(self) -> dict[str, float]:
        scores = self._inner.result()
        return {name: scores[name] for name in self._names}


def new_scorer(profile: Profile, protocol: dict) -> GMAScorer:
    return GMAScorer(protocol["passes"], protocol["pad_multiple"])
