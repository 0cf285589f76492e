"""UCF101 rawframes as Efficient-3DCNNs tests on them, and a small generated stand-in.

The test protocol is upstream's ``get_test_set`` as the seed's preprocessing script runs it
(``n_samples_for_each_video=0``, ``TemporalRandomCrop(16)``, ``Scale(112)``, ``CornerCrop(112, 'c')``,
``ToTensor(1)``, mean subtraction without std):

* each video of the split json's subset, in json order, is cut into clips starting at frames
  ``1, 1+T, 1+2T, ... < n_frames`` (T = sample_duration); a clip holds frames
  ``j .. min(j+T-1, n_frames)``, and a short last clip is loop-padded (repeating its own frames)
  to T. The random crop never moves: a clip is never longer than T. Upstream's ``range(1,
  n_frames, T)`` also means a last clip that would start exactly at ``n_frames`` is not made.
* every frame: shorter side to ``sample_size / scale_in_test`` (PIL bilinear, the longer side
  truncated), centre crop ``sample_size`` (offset rounded half to even), RGB 0..255 minus mean.
  A clip is stored as the cropped uint8 pixels and normalised when it is read.
* the label index is the class name's position in the json's ``labels``.
"""
from __future__ import annotations

import json
from functools import lru_cache, partial
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from harness.datasets import IndexedDataset, Item, ItemUnreadable, read_json_index, require_layout
from harness.metrics import VideoClassificationScorer
from harness.spec import DatasetLayoutError, Profile, Sample

FRAME_PATTERN = "image_{:05d}.jpg"
N_FRAMES_FILE = "n_frames"

LAYOUT = """\
UCF101/
├── annotation/
│   └── ucf101_01.json        {"labels": [class names, index order],
│                              "database": {video_id: {"subset": "training" | "validation",
│                                                      "annotations": {"label": class name}}}}
└── rawframes/
    └── <class name>/
        └── <video_id>/        e.g. ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01
            ├── image_00001.jpg ... image_<n>.jpg   (upstream utils/video_jpg_ucf101_hmdb51.py)
            └── n_frames                             (upstream utils/n_frames_ucf101_hmdb51.py)"""


def clip_frame_indices(n_frames: int, duration: int) -> list[list[int]]:
    """1-based frame numbers of each test clip of a video, as upstream cuts them."""
    clips = []
    for start in range(1, n_frames, duration):
        clip = list(range(start, min(n_frames + 1, start + duration)))
        clips.append([clip[i % len(clip)] for i in range(duration)])
    return clips


def crop_frame(image: Image.Image, protocol: dict, sample_size: int) -> np.ndarray:
    """One RGB frame -> uint8 [3, sample_size, sample_size]: upstream's Scale and CornerCrop, the
    last integer stage of its test transform (what the sample cache stores)."""
    target = int(sample_size / protocol["scale_in_test"])
    w, h = image.size
    if min(w, h) != target:
        size = (target, int(target * h / w)) if w < h else (int(target * w / h), target)
        image = image.resize(size, Image.BILINEAR)
    w, h = image.size
    # Python's round (half to even), as upstream's CornerCrop('c')
    left = int(round((w - sample_size) / 2.0))
    top = int(round((h - sample_size) / 2.0))
    image = image.crop((left, top, left + sample_size, top + sample_size))
    return np.asarray(image).transpose(2, 0, 1)


def normalise(pixels: np.ndarray, protocol: dict) -> np.ndarray:
    """uint8 [3, ...] -> float32: ToTensor(norm_value), then the mean subtracted per channel."""
    mean = np.asarray(protocol["mean"], dtype=np.float32).reshape((3,) + (1,) * (pixels.ndim - 1))
    return pixels.astype(np.float32) / protocol["norm_value"] - mean


def preprocess_frame(image: Image.Image, protocol: dict, sample_size: int) -> np.ndarray:
    """One RGB frame -> float32 [3, sample_size, sample_size], upstream's test transform."""
    return normalise(crop_frame(image, protocol, sample_size), protocol)


def _read_frame(path: Path) -> Image.Image:
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as err:
        raise ItemUnreadable(f"{path}: {err}") from err


def _load_video(item: Item, profile: Profile, protocol: dict) -> list[Sample]:
    video_id, label = item.meta
    _, duration, size, _ = profile.inputs["image"]
    n_file = item.path / N_FRAMES_FILE
    try:
        n_frames = int(float(n_file.read_text().strip()))  # upstream reads it as a float
    except (OSError, ValueError) as err:
        raise ItemUnreadable(f"{n_file}: {err}") from err
    if n_frames <= 0:
        raise ItemUnreadable(f"{n_file}: {n_frames} frames")
    held = sum(1 for _ in item.path.glob(FRAME_PATTERN.replace("{:05d}", "[0-9]" * 5)))
    if held > n_frames:  # upstream would read the first n_frames only: a cut video, unannounced
        raise ItemUnreadable(f"{n_file} says {n_frames} frames, the folder holds {held}")
    frames: dict[int, np.ndarray] = {}
    samples = []
    for k, indices in enumerate(clip_frame_indices(n_frames, duration)):
        for i in indices:
            if i not in frames:
                path = item.path / FRAME_PATTERN.format(i)
                if not path.exists():
                    raise ItemUnreadable(f"{path} missing; {n_file} says {n_frames} frames")
                frames[i] = crop_frame(_read_frame(path), protocol, size)
        clip = np.stack([frames[i] for i in indices], axis=1)  # uint8 [3, T, H, W]
        samples.append(Sample(f"{video_id}/clip{k}", {"image": clip}, (video_id, label)))
    return samples


def _finish(sample: Sample, protocol: dict) -> Sample:
    return Sample(sample.id, {"image": normalise(sample.inputs["image"], protocol)}, sample.target)


def open_dataset(root: Path, profile: Profile, protocol: dict, limit: int | None = None,
                 generated: bool = False) -> IndexedDataset:
    root = Path(root)
    _, _, height, width = profile.inputs["image"]
    if height != width:
        raise ValueError(f"input {profile.inputs['image']}: upstream crops square clips")
    require_layout(root, [protocol["annotation"], protocol["frames_dir"]], LAYOUT)
    annotation = root / protocol["annotation"]
    stat = annotation.stat()
    items = _read_index(annotation, stat.st_size, stat.st_mtime_ns, root / protocol["frames_dir"],
                        protocol["subset"])
    load = partial(_load_video, profile=profile, protocol=protocol)  # picklable, for worker processes
    return IndexedDataset(root, list(items), load, limit, generated, partial(_finish, protocol=protocol),
                          index=str(annotation))


@lru_cache(maxsize=8)
def _read_index(annotation: Path, size: int, mtime_ns: int, frames_dir: Path, subset: str
                ) -> tuple[Item, ...]:
    """The split json's items of one subset. UCF101's json is 1.2 MB (about 0.1 s to parse), and
    every batch size and backend opens the dataset again: parsed once per file version
    (``size`` and ``mtime_ns`` are in the key so that a rewritten file is parsed again).
    A video the database lists more than once is returned as often, for the dataset to fail
    by name; any other key repeated within an object is not a split json."""
    try:
        index, repeated = read_json_index(annotation)
        class_index = {name: i for i, name in enumerate(index["labels"])}
        items = tuple(
            Item(video_id, frames_dir / entry["annotations"]["label"] / video_id,
                 (video_id, class_index[entry["annotations"]["label"]]))
            for video_id, entry in index["database"].items()
            if entry["subset"] == subset
        )
    except (ValueError, KeyError, TypeError) as err:
        raise DatasetLayoutError(
            f"{annotation}: not an Efficient-3DCNNs split json ({err!r}); expected\n{LAYOUT}"
        ) from err
    other = sorted(key for key in repeated if key not in index["database"])
    if other:
        raise DatasetLayoutError(f"{annotation}: key(s) {', '.join(map(repr, other))} repeated within one "
                                 f"object; expected each once\n{LAYOUT}")
    return items + tuple(item for item in items for _ in range(repeated[item.id] - 1))


def new_scorer(profile: Profile, protocol: dict) -> VideoClassificationScorer:
    """Top-1/top-5 in percent over videos, each scored by the mean of its clips' softmaxes."""
    return VideoClassificationScorer("class", logits=True)


# UCF101 split-1 validation: 3,783 videos of about 190 frames on average, cut into about 45,000
# clips of 16 frames (issue 21's figure); python -m harness.bench_data extrapolates with it
FULL_SET_SAMPLES = 45_000

# The generated stand-in: a few short videos of distinct moving textures, one class each.
GENERATED_VIDEOS = (  # (class name, video id, frames)
    ("ApplyEyeMakeup", "v_ApplyEyeMakeup_g01_c01", 20),
    ("Archery", "v_Archery_g01_c01", 33),
    ("Biking", "v_Biking_g01_c01", 40),
    ("ApplyEyeMakeup", "v_ApplyEyeMakeup_g02_c01", 24),
)


def _texture(kind: int, frame: int, height: int, width: int) -> np.ndarray:
    """A BGR frame of one of three textures moving at a class-specific velocity."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == 0:  # horizontal stripes moving down
        a = np.sin(2 * np.pi * (y - 2.0 * frame) / 12.0)
        b = np.sin(2 * np.pi * x / 40.0)
    elif kind == 1:  # vertical stripes moving right
        a = np.sin(2 * np.pi * (x - 3.0 * frame) / 10.0)
        b = np.cos(2 * np.pi * y / 30.0)
    else:  # a checkerboard drifting diagonally
        a = np.sign(np.sin(2 * np.pi * (x - frame) / 16.0) * np.sin(2 * np.pi * (y - frame) / 16.0))
        b = np.sin(2 * np.pi * (x + y) / 50.0)
    bgr = np.stack([127 + 100 * a, 127 + 60 * b, 127 + 80 * a * b], axis=-1)
    return np.clip(bgr, 0, 255).astype(np.uint8)


def _generated_video(k: int) -> tuple[str, str, int]:
    """The k-th generated video: GENERATED_VIDEOS, then their classes and lengths again under
    new ids (a benchmark asks for hundreds)."""
    name, video_id, n_frames = GENERATED_VIDEOS[k % len(GENERATED_VIDEOS)]
    return (name, video_id, n_frames) if k < len(GENERATED_VIDEOS) else (name, f"v_{name}_g{k:04d}_c01", n_frames)


def generate(root: Path, profile: Profile, protocol: dict) -> None:
    """Write ``profile.generated_samples`` videos (20-40 frames, 4:3) in the rawframes layout.

    The generated json lists its own few classes as ``labels``, one held-out 'training' video
    absent from disk (the reader must skip it), and the videos as 'validation'.
    """
    root = Path(root)
    _, _, height, _ = profile.inputs["image"]
    # a little larger than the crop and 4:3 like UCF101, so that resizing and cropping both act
    frame_h = int(height / protocol["scale_in_test"]) + height // 8
    frame_w = frame_h * 4 // 3
    videos = [_generated_video(k) for k in range(profile.generated_samples)]
    labels = sorted({name for name, _, _ in GENERATED_VIDEOS})
    database = {"v_Archery_g08_c01": {"subset": "training", "annotations": {"label": "Archery"}}}
    for name, video_id, n_frames in videos:
        folder = root / protocol["frames_dir"] / name / video_id
        folder.mkdir(parents=True, exist_ok=True)
        for f in range(1, n_frames + 1):
            frame = _texture(labels.index(name), f, frame_h, frame_w)
            cv2.imwrite(str(folder / FRAME_PATTERN.format(f)), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
        (folder / N_FRAMES_FILE).write_text(str(n_frames))
        database[video_id] = {"subset": protocol["subset"], "annotations": {"label": name}}
    annotation = root / protocol["annotation"]
    annotation.parent.mkdir(parents=True, exist_ok=True)
    annotation.write_text(json.dumps({"labels": labels, "database": database}, indent=1))
