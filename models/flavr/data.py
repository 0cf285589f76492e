"""The FLAVR/QVI UCF101 test set layout: one folder per sample with four input frames and the
frame halfway between frame1 and frame2.

Reading follows upstream's ``dataset/ucf101_test.py``, which the seed's preprocess uses: folders
in ``sorted(os.listdir(root))`` order, each PNG opened with PIL, ``CenterCrop`` to the protocol's
size (torchvision's rounding of the offsets), ``ToTensor`` (RGB, /255). No resize.

The embedded default renders a smooth band-limited texture under a known smooth motion at
t = 0, 1, 1.5, 2, 3, so that framet is the scene exactly at its time (up to 8-bit rounding, which
every frame shares).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from harness.datasets import IndexedDataset, Item, ItemUnreadable, require_layout
from harness.spec import Profile, Sample

DATASET_DIR = "ucf101_extracted"
INPUT_FRAMES = ("frame0.png", "frame1.png", "frame2.png", "frame3.png")
TARGET_FRAME = "framet.png"
LAYOUT = f"""\
{DATASET_DIR}/
├── 0/
│   ├── frame0.png   input_0
│   ├── frame1.png   input_1
│   ├── frame2.png   input_2
│   ├── frame3.png   input_3
│   └── framet.png   the frame halfway between frame1 and frame2 (ground truth)
├── 1/
└── ...              one folder per sample, read in sorted name order
"""
# time of each file in frame intervals, for the embedded default
FRAME_TIMES = {"frame0.png": 0.0, "frame1.png": 1.0, TARGET_FRAME: 1.5, "frame2.png": 2.0, "frame3.png": 3.0}
GENERATOR_SEED = 7


def center_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[H, W, C] -> [h, w, C] with torchvision's offsets int(round((H - h) / 2))."""
    height, width = image.shape[:2]
    h, w = size
    if h > height or w > width:
        raise ValueError(f"image {height}x{width} is smaller than the crop {h}x{w}")
    top = int(round((height - h) / 2.0))
    left = int(round((width - w) / 2.0))
    return image[top:top + h, left:left + w]


def read_frame(path: Path, crop: tuple[int, int]) -> np.ndarray:
    """A PNG after CenterCrop: uint8 [3, h, w], the last integer stage (what the cache stores)."""
    try:
        with Image.open(path) as img:
            # the set's PNGs are RGB already; a palette or grey PNG still gives the 3 channels
            # the network takes, where upstream's ToTensor would give it 1 or 4
            rgb = np.asarray(img.convert("RGB"))
        cropped = center_crop(rgb, crop)
    except (OSError, ValueError) as err:
        raise ItemUnreadable(f"{path}: {err}") from err
    return np.ascontiguousarray(cropped.transpose(2, 0, 1))


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1], as ToTensor scales."""
    return pixels.astype(np.float32) / np.float32(255)


def load_frame(path: Path, crop: tuple[int, int]) -> np.ndarray:
    """A PNG as ToTensor gives it after CenterCrop: float32 [3, h, w] in [0, 1]."""
    return to_unit(read_frame(path, crop))


def open_dataset(
    root: Path, profile: Profile, protocol: dict, limit: int | None = None, generated: bool = False
) -> IndexedDataset:
    root = Path(root)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    first = folders[0] if folders else "<n>"
    require_layout(root, [f"{first}/{name}" for name in (*INPUT_FRAMES, TARGET_FRAME)], LAYOUT)
    load = partial(_load, crop=tuple(protocol["crop_hw"]), input_names=list(profile.inputs))  # picklable
    items = [Item(id=f"{DATASET_DIR}/{name}", path=root / name) for name in folders]
    return IndexedDataset(root, items, load, limit=limit, generated=generated, finish=_finish)


def _load(item: Item, crop: tuple[int, int], input_names: list[str]) -> list[Sample]:
    """The cropped uint8 frames; :func:`_finish` scales them on read."""
    frames = [read_frame(item.path / name, crop) for name in INPUT_FRAMES]
    target = read_frame(item.path / TARGET_FRAME, crop)
    return [Sample(id=item.id, inputs=dict(zip(input_names, frames)), target=target)]


def _finish(sample: Sample) -> Sample:
    return Sample(sample.id, {n: to_unit(a) for n, a in sample.inputs.items()}, to_unit(sample.target))


def _render(height: int, width: int, t: float, scene: dict) -> np.ndarray:
    """The scene at time t as uint8 [H, W, 3]: texture(x - d(t)) with d(t) = v t + a t^2 / 2.

    The texture is 0.5 + sum_k amp[k, c] sin(2 pi f_k . x + phase[k, c]); each wave is the
    imaginary part of a product of one complex exponential along y and one along x.
    """
    dx, dy = scene["velocity"] * t + 0.5 * scene["acceleration"] * t * t
    fx, fy = scene["freq"][:, 0], scene["freq"][:, 1]
    along_x = np.exp(2j * np.pi * fx[:, None] * (np.arange(width) - dx))  # [waves, W]
    along_y = np.exp(2j * np.pi * fy[:, None] * (np.arange(height) - dy))  # [waves, H]
    weights = scene["amplitude"] * np.exp(1j * scene["phase"])  # [waves, 3]
    image = 0.5 + np.einsum("kc,kh,kw->hwc", weights, along_y, along_x, optimize=True).imag
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def _scene(rng: np.random.Generator, waves: int = 6) -> dict:
    # periods of 8-40 px and peak amplitudes summing to 0.45 keep the texture smooth and in (0, 1)
    period = rng.uniform(8.0, 40.0, waves)
    angle = rng.uniform(0.0, np.pi, waves)
    amplitude = rng.dirichlet(np.ones(waves), size=3).T * 0.45  # [waves, 3]
    return {
        "freq": np.stack([np.cos(angle), np.sin(angle)], axis=1) / period[:, None],
        "phase": rng.uniform(0.0, 2 * np.pi, (waves, 3)),
        "amplitude": amplitude,
        "velocity": rng.uniform(-3.0, 3.0, 2),  # px per frame interval
        "acceleration": rng.uniform(-0.5, 0.5, 2),
    }


def generate(root: Path, profile: Profile, protocol: dict) -> None:
    root = Path(root)
    height, width = protocol["generated_hw"]
    for index in range(profile.generated_samples):
        scene = _scene(np.random.default_rng([GENERATOR_SEED, index]))
        folder = root / str(index)
        folder.mkdir(parents=True, exist_ok=True)
        for name, t in FRAME_TIMES.items():
            # PNG is lossless at any level; level 1 writes these textures about twice as fast
            Image.fromarray(_render(height, width, t, scene)).save(folder / name, compress_level=1)
