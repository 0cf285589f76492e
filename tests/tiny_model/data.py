"""Clips stored as decoded frames: ``clips/<clip>.npy`` (uint8 [T, H, W, 3], RGB) and a
``labels.csv`` index (``clip,label``), read into float32 [3, T, H, W] scaled to 0..1 minus mean."""
from __future__ import annotations

import csv
from functools import partial
from pathlib import Path

import numpy as np

from harness.datasets import IndexedDataset, Item, ItemUnreadable, require_layout
from harness.metrics import VideoClassificationScorer
from harness.spec import DatasetLayoutError, Profile, Sample

LAYOUT = """\
tiny/
├── labels.csv            clip,label (label: class index), one row per clip
└── clips/
    └── <clip>.npy        uint8 [T, H, W, 3] RGB frames"""


def _load_clip(item: Item, profile: Profile, protocol: dict) -> list[Sample]:
    clip_id, label = item.meta
    try:
        frames = np.load(item.path)
    except (OSError, ValueError) as err:
        raise ItemUnreadable(f"{item.path}: {err}") from err
    channels, length, height, width = profile.inputs["clip"]
    if frames.shape != (length, height, width, channels):
        raise ItemUnreadable(f"{item.path}: frames {frames.shape}, expected {(length, height, width, channels)}")
    pixels = frames.astype(np.float32) / 255.0 - np.float32(protocol["mean"])
    return [Sample(clip_id, {"clip": pixels.transpose(3, 0, 1, 2)}, (clip_id, label))]


def open_dataset(root: Path, profile: Profile, protocol: dict, limit: int | None = None,
                 generated: bool = False) -> IndexedDataset:
    root = Path(root)
    require_layout(root, ["labels.csv", "clips"], LAYOUT)
    try:
        with open(root / "labels.csv", newline="") as f:
            rows = [(row["clip"], int(row["label"])) for row in csv.DictReader(f)]
    except (KeyError, ValueError, TypeError) as err:
        raise DatasetLayoutError(f"{root / 'labels.csv'}: not a clip,label index ({err!r}); expected\n{LAYOUT}") from err
    items = [Item(clip, root / "clips" / f"{clip}.npy", (clip, label)) for clip, label in rows]
    return IndexedDataset(root, items, partial(_load_clip, profile=profile, protocol=protocol), limit, generated)


def new_scorer(profile: Profile, protocol: dict) -> VideoClassificationScorer:
    return VideoClassificationScorer("class", logits=True, ks=(1,))


def generate(root: Path, profile: Profile, protocol: dict) -> None:
    """``profile.generated_samples`` clips of a bar moving at a class-specific speed."""
    root = Path(root)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    _, length, height, width = profile.inputs["clip"]
    classes = profile.outputs["class"][0]
    x = np.arange(width)
    rows = []
    for i in range(profile.generated_samples):
        label = i % classes
        frames = np.zeros((length, height, width, 3), np.uint8)
        for t in range(length):
            frames[t, :, (x - (label + 1) * t - i) % width < 3] = (200, 120, 40 * label)
        np.save(root / "clips" / f"clip{i:03d}.npy", frames)
        rows.append(f"clip{i:03d},{label}")
    (root / "labels.csv").write_text("clip,label\n" + "\n".join(rows) + "\n")
