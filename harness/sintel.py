"""MPI-Sintel pieces shared by the optical-flow models (FlowNet2, GMA).

Reading the training tree and its Middlebury ``.flo`` ground truth, writing a small synthetic
tree in the same layout with exact ground truth, and the end-point-error metrics both seeds
report (FlowNet2 averages per-image mean EPE; GMA weighs every pixel of a pass equally).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Mapping, Sequence

import cv2
import numpy as np

from harness.datasets import Item, ItemUnreadable, require_layout
from harness.spec import Sample

FLO_MAGIC = np.float32(202021.25)  # Middlebury's tag: the bytes read "PIEH"
_FLO_HEADER_BYTES = 12
_MAX_FLO_SIDE = 100_000  # a larger width/height means the header is garbage
# Middlebury's "unknown flow": a component larger than this in magnitude (UNKNOWN_FLOW_THRESH in
# flow-code's flowIO.h; its imageLib counts NaN as unknown too). MPI-Sintel uses no such value:
# its ground truth is dense, the SDK's flow_io.py reads every pixel, and the evaluations of the
# benchmark, of FlowNet2 and of GMA (RAFT's validate_sintel) score every pixel with no validity
# mask. So a ground truth holding one cannot be scored as published: the pair fails, counted.
UNKNOWN_FLOW_THRESH = 1e9

SINTEL_LAYOUT = """\
<root>/                             (e.g. <data-root>/MPI-Sintel)
  training/
    clean/<scene>/frame_%04d.png    frames 1..N of each scene
    final/<scene>/frame_%04d.png    same frames, rendered with blur and effects
    flow/<scene>/frame_%04d.flo     Middlebury .flo, flow from frame i to frame i+1
"""

_FLO_NAME = re.compile(r"frame_(\d{4})\.flo")


def read_flo(path: Path | str) -> np.ndarray:
    """A Middlebury .flo file as a [H, W, 2] float32 array (u horizontal, v vertical)."""
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < _FLO_HEADER_BYTES:
        raise ValueError(
            f"{path}: {len(raw)} bytes, too short for a .flo header "
            f"(expected float32 {FLO_MAGIC}, int32 width, int32 height)"
        )
    magic = np.frombuffer(raw, "<f4", count=1)[0]
    if magic != FLO_MAGIC:
        raise ValueError(f"{path}: magic {magic!r}, expected float32 {FLO_MAGIC} for a .flo file")
    w, h = (int(v) for v in np.frombuffer(raw, "<i4", count=2, offset=4))
    if not (0 < w <= _MAX_FLO_SIDE and 0 < h <= _MAX_FLO_SIDE):
        raise ValueError(f"{path}: header says {w}x{h}, expected a positive width and height")
    expected = _FLO_HEADER_BYTES + 4 * 2 * w * h
    if len(raw) != expected:
        raise ValueError(
            f"{path}: {len(raw)} bytes, expected {expected} for a {w}x{h} flow "
            f"(12-byte header + {h}*{w}*2 float32)"
        )
    data = np.frombuffer(raw, "<f4", offset=_FLO_HEADER_BYTES)
    return data.reshape(h, w, 2).astype(np.float32)


def write_flo(path: Path | str, flow: np.ndarray) -> None:
    """Write a [H, W, 2] flow as a Middlebury .flo file."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"{path}: flow of shape {flow.shape}, expected [H, W, 2]")
    h, w = flow.shape[:2]
    header = np.array([FLO_MAGIC], "<f4").tobytes() + np.array([w, h], "<i4").tobytes()
    Path(path).write_bytes(header + np.ascontiguousarray(flow, "<f4").tobytes())


def list_pairs(root: Path, passes: Sequence[str]) -> list[Item]:
    """Every frame pair that has ground truth, per pass, sorted by pass, scene, frame.

    The flow folder is the index: a pair listed there whose frames are absent in a pass is
    listed anyway so that the dataset records it as missing.
    """
    root = Path(root)
    passes = sorted(set(passes))
    require_layout(root, ["training/flow", *(f"training/{p}" for p in passes)], SINTEL_LAYOUT)
    flow_dir = root / "training" / "flow"
    ground_truth = []  # (scene, frame index, .flo path)
    for scene in sorted(d for d in flow_dir.iterdir() if d.is_dir()):
        for flo in sorted(scene.iterdir()):
            match = _FLO_NAME.fullmatch(flo.name)
            if match:
                ground_truth.append((scene.name, int(match.group(1)), flo))
    items = []
    for p in passes:
        for scene, i, flo in ground_truth:
            frames = root / "training" / p / scene
            items.append(
                Item(
                    id=f"{p}/{scene}/frame_{i:04d}",
                    path=frames / f"frame_{i:04d}.png",
                    meta=(frames / f"frame_{i + 1:04d}.png", flo),
                )
            )
    return items


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ItemUnreadable(f"{path}: OpenCV cannot read it as an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def undefined_flow(flow: np.ndarray) -> str:
    """How many pixels of a [H, W, 2] flow hold NaN or Inf, or Middlebury's unknown flow; ''
    when none do."""
    finite = np.isfinite(flow).all(axis=-1)
    unknown = finite & (np.abs(np.where(np.isfinite(flow), flow, 0)) > UNKNOWN_FLOW_THRESH).any(axis=-1)
    found = [f"{int(count)} of {finite.size} pixels hold {what}"
             for count, what in (((~finite).sum(), "NaN or Inf"),
                                 (unknown.sum(), f"unknown flow (|u| or |v| > {UNKNOWN_FLOW_THRESH:g})"))
             if count]
    return ", ".join(found)


def load_pair(item: Item) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame i, frame i+1) as HxWx3 uint8 RGB, and the flow between them, HxWx2 float32."""
    second, flo = item.meta
    img1, img2 = _read_rgb(item.path), _read_rgb(second)
    try:
        flow = read_flo(flo)
    except (OSError, ValueError) as err:
        raise ItemUnreadable(str(err) if isinstance(err, ValueError) else f"{flo}: {err}") from err
    undefined = undefined_flow(flow)
    if undefined:
        raise ItemUnreadable(f"{flo}: {undefined}; MPI-Sintel's ground truth is dense and scored at every "
                             f"pixel (no validity mask), expected finite flow")
    if img1.shape != img2.shape or flow.shape[:2] != img1.shape[:2]:
        raise ItemUnreadable(
            f"{item.id}: sizes disagree: {item.path} {img1.shape[:2]}, {second} {img2.shape[:2]}, "
            f"{flo} {flow.shape[:2]}"
        )
    return img1, img2, flow


# --- synthetic data -------------------------------------------------------------------------

_PAIRS_PER_SCENE = 2  # scenes of 3 frames, so that a pair's second frame is the next pair's first
_WAVES = 24  # sinusoids per channel of the texture
_WAVELENGTH_PX = (16.0, 64.0)  # band of the texture: smooth enough to interpolate bilinearly
_TRANSLATION_PX = (1.0, 3.0)  # range of |t|, in a random direction
_CORNER_PX = 1.5  # max displacement at the image corners from the rotation, likewise from zoom
_FINAL_BLUR_SIGMA = 0.8
_FINAL_NOISE_STD = 2.0


class _Texture:
    """T(x, y) per RGB channel: a sum of sinusoids, evaluated exactly at any real coordinate."""

    def __init__(self, rng: np.random.Generator):
        wavelength = rng.uniform(*_WAVELENGTH_PX, size=(3, _WAVES))
        angle = rng.uniform(0.0, np.pi, size=(3, _WAVES))
        self.kx = 2 * np.pi / wavelength * np.cos(angle)
        self.ky = 2 * np.pi / wavelength * np.sin(angle)
        self.phase = rng.uniform(0.0, 2 * np.pi, size=(3, _WAVES))
        amplitude = rng.uniform(0.5, 1.0, size=(3, _WAVES))
        # a channel's standard deviation is 40 grey levels around 128, so clipping is rare
        self.amplitude = amplitude * 40.0 / np.sqrt((amplitude**2).sum(axis=1, keepdims=True) / 2)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.full(x.shape + (3,), 128.0)
        for c in range(3):
            for k in range(_WAVES):
                out[..., c] += self.amplitude[c, k] * np.cos(
                    self.kx[c, k] * x + self.ky[c, k] * y + self.phase[c, k]
                )
        return out


def _random_motion(
    rng: np.random.Generator, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """An affine map g(p) = A p + b about the image centre: translation, rotation and zoom."""
    radius = 0.5 * np.hypot(height - 1, width - 1)
    theta = rng.uniform(-1.0, 1.0) * _CORNER_PX / radius
    zoom = 1.0 + rng.uniform(-1.0, 1.0) * _CORNER_PX / radius
    a = zoom * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    heading = rng.uniform(0.0, 2 * np.pi)
    t = rng.uniform(*_TRANSLATION_PX) * np.array([np.cos(heading), np.sin(heading)])
    return a, centre + t - a @ centre


def _apply(affine: tuple[np.ndarray, np.ndarray], x: np.ndarray, y: np.ndarray):
    a, b = affine
    return a[0, 0] * x + a[0, 1] * y + b[0], a[1, 0] * x + a[1, 1] * y + b[1]


def _to_png(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: OpenCV could not write it")


def _final_pass(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sintel's final pass adds blur and effects to the same geometry; a blur and noise here."""
    blurred = cv2.GaussianBlur(rgb, (0, 0), _FINAL_BLUR_SIGMA, borderType=cv2.BORDER_REFLECT)
    return blurred + rng.normal(0.0, _FINAL_NOISE_STD, size=rgb.shape)


def generate_sintel(
    root: Path,
    size: tuple[int, int],
    pairs_per_pass: int,
    passes: Sequence[str] = ("clean", "final"),
    seed: int = 0,
) -> None:
    """Write ``pairs_per_pass`` pairs per pass in the Sintel layout, with exact ground truth.

    ``size`` is (height, width). A scene's last frame is an analytic texture T; each earlier
    frame k is the next one seen through an affine map g_k, frame_k(p) = frame_{k+1}(g_k(p)),
    i.e. T composed with the chain of maps, evaluated analytically. The flow from frame k to
    frame k+1 is then exactly f_k(p) = g_k(p) - p. Both passes share frames and flow; 'final'
    adds a blur and noise. Scenes are 'gen_00', 'gen_01', ...
    """
    root = Path(root)
    height, width = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    rng = np.random.default_rng(seed)
    scenes = -(-pairs_per_pass // _PAIRS_PER_SCENE)
    for s in range(scenes):
        scene = f"gen_{s:02d}"
        pairs = min(_PAIRS_PER_SCENE, pairs_per_pass - s * _PAIRS_PER_SCENE)
        texture = _Texture(rng)
        motions = [_random_motion(rng, height, width) for _ in range(pairs)]
        frames = [texture(x, y)]  # built from the last frame backwards
        for k in reversed(range(pairs)):
            gx, gy = _apply(motions[k], x, y)
            flow = np.stack([gx - x, gy - y], axis=-1).astype(np.float32)
            flow_path = root / "training" / "flow" / scene / f"frame_{k + 1:04d}.flo"
            flow_path.parent.mkdir(parents=True, exist_ok=True)
            write_flo(flow_path, flow)
            # frame_k = T o g_{last} o ... o g_k: push the coordinates through the later maps
            for later in motions[k + 1 :]:
                gx, gy = _apply(later, gx, gy)
            frames.insert(0, texture(gx, gy))
        for p in passes:
            noise = np.random.default_rng([seed, s, sum(map(ord, p))])
            for k, rgb in enumerate(frames, start=1):
                image = rgb if p == "clean" else _final_pass(rgb, noise)
                _to_png(root / "training" / p / scene / f"frame_{k:04d}.png", image)


# --- metrics --------------------------------------------------------------------------------

_PX_THRESHOLDS = (1, 3, 5)


def flow_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """End-point error per pixel, [H, W], of flows given as [2, H, W]."""
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[0] != 2:
        raise ValueError(f"flows of shapes {pred.shape} and {gt.shape}, expected both [2, H, W]")
    diff = np.asarray(pred, np.float64) - np.asarray(gt, np.float64)
    return np.sqrt((diff**2).sum(axis=0))


class FlowScorer:
    """Streaming EPE metrics per Sintel pass.

    ``crop`` maps the model's output [2, Hp, Wp] back to the ground truth's size (e.g. undoing
    padding); ``sample.target`` is the ground-truth flow [H, W, 2]; ``sample.id`` starts with
    the pass. Per pass p: ``epe_<p>`` averages per-image mean EPEs (FlowNet2's evaluation),
    ``px{1,3,5}_<p>`` are the percentages of all the pass's pixels with EPE below 1/3/5 and
    ``epe_all_px_<p>`` the pixel-weighted EPE (GMA's evaluation).
    """

    def __init__(
        self,
        output: str,
        crop: Callable[[np.ndarray], np.ndarray] | None,
        passes: Sequence[str],
    ):
        self.output = output
        self.crop = crop
        self.passes = tuple(passes)
        self._images = dict.fromkeys(self.passes, 0)
        self._image_epe_sum = dict.fromkeys(self.passes, 0.0)
        self._pixels = dict.fromkeys(self.passes, 0)
        self._pixel_epe_sum = dict.fromkeys(self.passes, 0.0)
        self._below = {p: dict.fromkeys(_PX_THRESHOLDS, 0) for p in self.passes}

    def add(self, sample: Sample, outputs: Mapping[str, np.ndarray]) -> None:
        p = sample.id.split("/", 1)[0]
        if p not in self._images:
            raise ValueError(f"sample {sample.id!r}: pass {p!r} is not one of {self.passes}")
        pred = np.asarray(outputs[self.output])
        if self.crop is not None:
            pred = self.crop(pred)
        epe = flow_errors(pred, np.moveaxis(np.asarray(sample.target), -1, 0))
        self._images[p] += 1
        self._image_epe_sum[p] += float(epe.mean())
        self._pixels[p] += epe.size
        self._pixel_epe_sum[p] += float(epe.sum())
        for t in _PX_THRESHOLDS:
            self._below[p][t] += int((epe < t).sum())

    def result(self) -> dict[str, float]:
        out = {}
        for p in self.passes:
            images, pixels = self._images[p], self._pixels[p]
            out[f"epe_{p}"] = self._image_epe_sum[p] / images if images else float("nan")
            for t in _PX_THRESHOLDS:
                out[f"px{t}_{p}"] = 100.0 * self._below[p][t] / pixels if pixels else float("nan")
            out[f"epe_all_px_{p}"] = self._pixel_epe_sum[p] / pixels if pixels else float("nan")
        return out
