"""FLAVR's UCF101 reader (upstream's ucf101_test.py preprocessing) and the embedded generator."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.spec import DatasetLayoutError
from models.flavr import data
from models.flavr.spec import SPEC

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / SPEC.dataset_dir
SMOKE = SPEC.profile("smoke")
SMOKE_PROTOCOL = SPEC.protocol_for("smoke")
FILES = (*data.INPUT_FRAMES, data.TARGET_FRAME)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flavr") / SPEC.dataset_dir
    SPEC.generate_dataset(root, SMOKE, SMOKE_PROTOCOL)
    return root


def _write_sample(folder: Path, size_hw: tuple[int, int], skip: str | None = None) -> None:
    folder.mkdir(parents=True)
    for value, name in enumerate(FILES):
        if name != skip:
            Image.new("RGB", size_hw[::-1], (value * 40, 0, 0)).save(folder / name)


def test_generated_layout(generated):
    folders = sorted(p.name for p in generated.iterdir())
    assert folders == [str(i) for i in range(SMOKE.generated_samples)]
    for folder in folders:
        for name in FILES:
            with Image.open(generated / folder / name) as img:
                assert img.mode == "RGB"
                assert img.size[::-1] == tuple(SMOKE_PROTOCOL["generated_hw"])


def test_generated_samples_are_deterministic_and_distinct(generated, tmp_path):
    SPEC.generate_dataset(tmp_path, SMOKE, SMOKE_PROTOCOL)
    for name in FILES:
        a = np.asarray(Image.open(generated / "0" / name))
        assert np.array_equal(a, np.asarray(Image.open(tmp_path / "0" / name)))
    assert not np.array_equal(
        np.asarray(Image.open(generated / "0" / "framet.png")),
        np.asarray(Image.open(generated / "1" / "framet.png")),
    )


def test_reader_on_generated_data(generated):
    ds = SPEC.open_dataset(generated, SMOKE, SMOKE_PROTOCOL, None, True)
    samples = list(ds)
    assert [s.id for s in samples] == [f"ucf101_extracted/{i}" for i in range(SMOKE.generated_samples)]
    for s in samples:
        assert list(s.inputs) == list(SMOKE.inputs)
        for name, arr in s.inputs.items():
            assert arr.dtype == np.float32 and arr.shape == SMOKE.inputs[name]
            assert 0.0 <= arr.min() and arr.max() <= 1.0
        assert s.target.shape == SMOKE.outputs["output_0"] and s.target.dtype == np.float32
    assert ds.summary["read"] == SMOKE.generated_samples and not ds.complete  # generated


def test_generated_motion_is_the_declared_one():
    # velocity (2, 4) px per interval and no acceleration: whole-pixel displacements, so frames
    # are exact shifts of each other and framet (t = 1.5) is frame0 moved by 1.5 v = (3, 6)
    scene = data._scene(np.random.default_rng(0))
    scene["velocity"] = np.array([2.0, 4.0])  # (x, y)
    scene["acceleration"] = np.zeros(2)
    frames = {t: data._render(40, 50, t, scene) for t in (0.0, 1.0, 1.5, 2.0)}
    np.testing.assert_array_equal(frames[2.0][4:, 2:], frames[1.0][:-4, :-2])
    np.testing.assert_array_equal(frames[1.5][6:, 3:], frames[0.0][:-6, :-3])


def test_center_crop_rounds_offsets_like_torchvision():
    image = np.arange(240 * 320).reshape(240, 320, 1)
    crop = data.center_crop(image, (224, 224))
    assert crop[0, 0, 0] == image[8, 48, 0]
    # odd margins: int(round(x / 2.0)) rounds halves to even, 5 -> 2 and 7 -> 4
    odd = np.arange(21 * 23).reshape(21, 23, 1)
    assert data.center_crop(odd, (16, 16))[0, 0, 0] == odd[2, 4, 0]
    with pytest.raises(ValueError, match="smaller than the crop"):
        data.center_crop(odd, (24, 16))


def test_folders_are_read_in_sorted_name_order(tmp_path):
    for name in ("2", "10", "1"):
        _write_sample(tmp_path / name, (56, 64))
    ids = [s.id for s in SPEC.open_dataset(tmp_path, SMOKE, SMOKE_PROTOCOL, None, False)]
    assert ids == ["ucf101_extracted/1", "ucf101_extracted/10", "ucf101_extracted/2"]


def test_unreadable_items_are_recorded_by_name(tmp_path):
    _write_sample(tmp_path / "0", (56, 64))
    _write_sample(tmp_path / "1", (56, 64), skip="frame2.png")
    _write_sample(tmp_path / "2", (40, 64))  # smaller than the 48x48 crop
    ds = SPEC.open_dataset(tmp_path, SMOKE, SMOKE_PROTOCOL, None, False)
    assert [s.id for s in ds] == ["ucf101_extracted/0"]
    assert set(ds.failed) == {"ucf101_extracted/1", "ucf101_extracted/2"}
    assert "frame2.png" in ds.failed["ucf101_extracted/1"]
    assert "smaller than the crop" in ds.failed["ucf101_extracted/2"]
    assert not ds.complete


def test_limit(generated):
    ds = SPEC.open_dataset(generated, SMOKE, SMOKE_PROTOCOL, 2, True)
    assert len(list(ds)) == 2


@pytest.mark.parametrize("make", ["absent", "empty", "no_target"])
def test_wrong_layout_shows_the_expected_tree(tmp_path, make):
    root = tmp_path / "root"
    if make != "absent":
        root.mkdir()
    if make == "no_target":
        _write_sample(root / "0", (56, 64), skip=data.TARGET_FRAME)
    with pytest.raises(DatasetLayoutError) as err:
        SPEC.open_dataset(root, SMOKE, SMOKE_PROTOCOL, None, False)
    assert "framet.png" in str(err.value) and data.LAYOUT in str(err.value)


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real samples absent: {REAL}")
def test_reader_on_real_data_matches_a_pil_center_crop():
    full = SPEC.profile("full")
    ds = SPEC.open_dataset(REAL, full, SPEC.protocol_for("full"), None, False)
    samples = list(ds)
    assert ds.complete and len(samples) == len([p for p in REAL.iterdir() if p.is_dir()])
    first = samples[0]
    assert first.id == "ucf101_extracted/0"
    with Image.open(REAL / "0" / "frame1.png") as img:
        assert img.size == (320, 240)
        # torchvision's CenterCrop(224) box on 320x240: left 48, top 8
        expected = np.asarray(img.convert("RGB").crop((48, 8, 272, 232)), np.float32) / 255
    np.testing.assert_array_equal(first.inputs["input_1"], expected.transpose(2, 0, 1))
    assert first.target.shape == (3, 224, 224)
    assert not np.array_equal(first.target, first.inputs["input_1"])
