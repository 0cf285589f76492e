"""The published verdict on the user's path, run as a user runs it (pytest's ``pytester``):

* every registered model given an upstream-format checkpoint (the seed's file name, upstream's
  nesting, key prefix and the entries saved beside the weights; tests/upstream_checkpoints.py)
  reaches the published verdict with no error, and says precisely why it does not apply;
* a small model added in a sandboxed copy of the project (tests/tiny_model/, as
  tests/test_adding_a_model.py adds it) with published figures, a checkpoint and a dataset whose
  index is complete, at ``--profile full``: green in the band, red below it and red above it
  (naming metric, value and band), not applicable naming each reason on its own;
* with ``-m full_index`` (the nightly CPU job; 11.6 min on this project's 2 shared cores),
  Efficient-3DCNNs on a complete index of the seed's 3,783 videos at full shapes, cheap content and
  an upstream-format checkpoint of random weights: red, naming each metric and its band.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from harness import checkpoint, registry
from harness.cache import file_sha256
from test_adding_a_model import TINY, _project_copy
from upstream_checkpoints import write_seeded_checkpoints, write_upstream_checkpoint

SEEDED_REASONS = "generated data (no --data-root); smoke profile shapes (use --profile full)"


@pytest.fixture(scope="module")
def upstream_weights(tmp_path_factory) -> Path:
    """Every registered model's seeded network as the upstream checkpoint file (same bytes every
    time, so the shared cache serves its ONNX and reference outputs after the first run)."""
    directory = tmp_path_factory.mktemp("weights")
    write_seeded_checkpoints(directory)
    return directory


def test_upstream_checkpoints_of_every_model_reach_the_published_verdict(run_suite, upstream_weights):
    specs = registry.all_specs()
    result = run_suite("-m", "accuracy", f"--weights-dir={upstream_weights}", "--batch-sizes=1", "--limit=1",
                       tests=("test_accuracy.py", "test_published.py"))
    assert result.ret == 0, result.stdout.str()[-4000:]
    result.assert_outcomes(passed=len(specs), skipped=len(specs))
    rows = {r["model"]: r for r in result.results["records"] if r.get("published")}
    for spec in specs:
        reason = SEEDED_REASONS
        if spec.checkpoint.sha256_prefix:  # the seeded file is not the published one
            sha = file_sha256(upstream_weights / spec.checkpoint.filename)
            reason = (f"checkpoint sha256 {sha[:8]}... does not start with {spec.checkpoint.sha256_prefix}: "
                      f"not the published file; {reason}")
        result.stdout.fnmatch_lines([f"SKIPPED *{spec.name}: published figures do not apply: {reason}"])
        published = rows[spec.name]["published"]
        assert (published["applies"], published["reason"]) == (False, reason)
        assert {m["verdict"] for m in published["metrics"].values()} == {"n/a"}
        assert rows[spec.name]["weights"]["sha256"] == file_sha256(upstream_weights / spec.checkpoint.filename)


# --- a small model with published figures, end to end ----------------------------------------

CLIPS = 10  # the tiny dataset's index; 6 of them labelled as the network predicts: top-1 60 %
TOP1 = 60.0


def _tiny_module(name: str):
    """tests/tiny_model/<name>.py, imported on its own (it needs only the harness)."""
    spec = importlib.util.spec_from_file_location(f"tiny_model_{name}", TINY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_profile(profile: str):
    source = (TINY / "spec.py").read_text()
    side = {"smoke": 16, "full": 32}[profile]
    frames = {"smoke": 4, "full": 8}[profile]
    assert f'"clip": (3, {frames}, {side}, {side})' in source, "tests/tiny_model/spec.py changed its shapes"
    from harness.spec import Profile

    return Profile(inputs={"clip": (3, frames, side, side)}, outputs={"class": (5,)}, batch_sizes=(1,),
                   generated_samples=CLIPS)


def _write_tiny_dataset(root: Path, profile: str, network: torch.nn.Module) -> None:
    """``root`` in the tiny layout: CLIPS clips, the first 6 labelled with the class the network
    predicts and the rest with another, so that the deployed top-1 is exactly TOP1."""
    data = _tiny_module("data")
    shapes = _tiny_profile(profile)
    data.generate(root, shapes, {"mean": 0.5})
    labels = []
    for i in range(CLIPS):
        frames = np.load(root / "clips" / f"clip{i:03d}.npy").astype(np.float32) / 255.0 - np.float32(0.5)
        with torch.no_grad():
            logits = network(torch.from_numpy(frames.transpose(3, 0, 1, 2)[None].copy()))[0]
        predicted = int(logits.argmax())
        assert float(logits.sort(descending=True).values[0] - logits.sort(descending=True).values[1]) > 1e-3, \
            "a near tie between two classes: the deployed top-1 could differ from PyTorch's"
        labels.append(predicted if i < 6 else (predicted + 1) % 5)
    (root / "labels.csv").write_text("clip,label\n" + "".join(f"clip{i:03d},{c}\n" for i, c in enumerate(labels)))


# name -> what its card changes: the published top-1 and band, the items the figure was measured
# on, the sha256 prefix of the published file, the dataset folder
VARIANTS = {
    "tiny_in_band": {"published": 62.0, "band": 5.0},
    "tiny_below": {"published": 80.0, "band": 5.0},  # the deployed 60 % lies below 75 to 85
    "tiny_above": {"published": 40.0, "band": 5.0},  # the deployed 60 % lies above 35 to 45: a wrong protocol
    "tiny_short_index": {"published": 62.0, "band": 5.0, "items": CLIPS + 1},
    "tiny_other_file": {"published": 62.0, "band": 5.0, "sha256": "other"},
    "tiny_partial": {"published": 62.0, "band": 5.0, "dataset_dir": "tiny_partial"},
}


def _variant_source(name: str, change: dict, sha256: str) -> dict[str, str]:
    """tests/tiny_model's files as package ``models/<name>/`` with the card changed as ``change`` says."""
    files = {p.name: p.read_text().replace("models.tiny", f"models.{name}") for p in TINY.glob("*.py")}
    spec = files["spec.py"]
    edits = {
        'name="tiny"': f'name="{name}"',
        'Metric("top1", True, published=60.0, published_band=5.0':
            f'Metric("top1", True, published={change["published"]}, published_band={change["band"]}',
        "published_items=None": f"published_items={change.get('items', CLIPS)}",
        'dataset_dir="tiny"': f'dataset_dir="{change.get("dataset_dir", "tiny")}"',
    }
    if change.get("sha256") == "other":
        other = "0" * 8 if not sha256.startswith("0" * 8) else "f" * 8
        edits['strip_prefix="module."'] = f'strip_prefix="module.", sha256_prefix="{other}"'
    for old, new in edits.items():
        assert spec.count(old) == 1, f"tests/tiny_model/spec.py no longer holds {old!r}"
        spec = spec.replace(old, new)
    files["spec.py"] = spec
    return files


@pytest.fixture(scope="module")
def tiny_night(tmp_path_factory):
    """(project, weights, data roots by profile): a sandboxed project with the tiny variants, their
    upstream-format checkpoint, and complete datasets at full and smoke shapes (plus a partial copy)."""
    root = tmp_path_factory.mktemp("tiny_night")
    network_module = _tiny_module("network")
    torch.manual_seed(checkpoint.SEED)
    network = network_module.TinyC3D().eval()
    weights = root / "weights"
    path = write_upstream_checkpoint("tiny", _tiny_checkpoint_card(), network.state_dict(), weights)
    project = _project_copy(root / "project")
    for name, change in VARIANTS.items():
        package = project / "models" / name
        package.mkdir()
        for file, source in _variant_source(name, change, file_sha256(path)).items():
            (package / file).write_text(source)
    data = {}
    for profile in ("full", "smoke"):
        data[profile] = root / f"data-{profile}"
        _write_tiny_dataset(data[profile] / "tiny", profile, network)
    shutil.copytree(data["full"] / "tiny", data["full"] / "tiny_partial")
    (data["full"] / "tiny_partial" / "clips" / "clip009.npy").unlink()  # listed, absent: a partial copy
    return project, weights, data


def _tiny_checkpoint_card():
    """The tiny card's checkpoint format (its spec.py imports the sandbox's models package)."""
    from harness.spec import Checkpoint

    declared = 'Checkpoint(filename="tiny_c3d.pth", nesting="state_dict", strip_prefix="module."'
    assert declared in (TINY / "spec.py").read_text(), "tests/tiny_model/spec.py changed its checkpoint format"
    return Checkpoint(filename="tiny_c3d.pth", nesting="state_dict", strip_prefix="module.")


def _published_rows(result) -> dict[str, dict]:
    return {r["model"]: r["published"] for r in result.results["records"] if r.get("published")}


def test_published_verdict_green_in_the_band_red_outside_it_and_naming_each_reason(run_suite, tiny_night, tmp_path):
    project, weights, data = tiny_night
    result = run_suite("--profile=full", "--batch-sizes=1", f"--weights-dir={weights}", f"--data-root={data['full']}",
                       "--accept-missing", f"--models={','.join(VARIANTS)}", "-v", tests=("test_published.py",),
                       project=project, cache=tmp_path / "cache")
    result.assert_outcomes(passed=1, failed=2, skipped=3)
    for line in ("*test_published_figure[[]*tiny_in_band*[]] PASSED*",
                 "E * tiny_below bs1 on onnxruntime (fp32) against the published figures: *top1 60% lies below the "
                 "published 80 ± 5% (75 to 85): worse than published",
                 "E * tiny_above bs1 on onnxruntime (fp32) against the published figures: *top1 60% lies above the "
                 "published 40 ± 5% (35 to 45): better than published: check the protocol"):
        result.stdout.fnmatch_lines([line])
    sha = file_sha256(weights / "tiny_c3d.pth")
    other = "0" * 8 if not sha.startswith("0" * 8) else "f" * 8
    reasons = {
        "tiny_short_index": f"incomplete index: the dataset's index lists {CLIPS} of the {CLIPS + 1} items the "
                            "published figure was measured on",
        "tiny_other_file": f"checkpoint sha256 {sha[:8]}... does not start with {other}: not the published file",
        "tiny_partial": f"partial copy: 1 of the {CLIPS} listed items absent under {data['full'] / 'tiny_partial'}",
    }
    for name, reason in reasons.items():
        result.stdout.fnmatch_lines([f"SKIPPED *{name}: published figures do not apply: {reason}"])
    rows = _published_rows(result)
    assert (rows["tiny_in_band"]["applies"], rows["tiny_in_band"]["reason"]) == (True, None)
    assert rows["tiny_in_band"]["metrics"]["top1"] == {"published": 62.0, "value": pytest.approx(TOP1), "verdict": "pass",
                                                       "why": "top1 60% lies within the published 62 ± 5%"}
    assert rows["tiny_below"]["metrics"]["top1"]["verdict"] == rows["tiny_above"]["metrics"]["top1"]["verdict"] == "fail"
    for name, reason in reasons.items():
        assert (rows[name]["applies"], rows[name]["reason"], rows[name]["metrics"]["top1"]["verdict"]) == (False, reason, "n/a")


def test_limit_and_smoke_profile_are_each_named(run_suite, tiny_night, tmp_path):
    project, weights, data = tiny_night
    result = run_suite("--batch-sizes=1", "--limit=3", f"--weights-dir={weights}", f"--data-root={data['smoke']}",
                       "--models=tiny_in_band", tests=("test_published.py",), project=project, cache=tmp_path / "cache")
    result.assert_outcomes(skipped=1)
    reason = f"--limit 3: 3 of the {CLIPS} listed items taken; smoke profile shapes (use --profile full)"
    result.stdout.fnmatch_lines([f"SKIPPED *tiny_in_band: published figures do not apply: {reason}"])
    assert _published_rows(result)["tiny_in_band"]["reason"] == reason


# --- a real model on a complete index at the seed's item count -------------------------------

FULL_INDEX = "full_index"  # the marker (fixtures/options.py MARKERS) the nightly CPU job selects
# the preprocessed-sample cache keys each file by path, size and mtime: the same files every night
# are then decoded once (3,783 clips, 2.3 GB), not once per night
STABLE_MTIME = 1_600_000_000


def _write_ucf101_split(root: Path, spec) -> None:
    """UCF101 in the rawframes layout with an Efficient-3DCNNs split json that lists the seed's
    3,783 validation videos over the 101 classes, every one present: cheap content (two hardlinks
    of one 112x112 frame each, one 16-frame clip per video), the seed's shapes."""
    import json

    from PIL import Image

    protocol = spec.protocol_for("full")
    side = spec.profile("full").inputs["image"][-1]
    classes = [f"Class{c:03d}" for c in range(spec.profile("full").outputs["class"][0])]
    frame = root / "frame.jpg"
    root.mkdir(parents=True)
    y, x = np.mgrid[0:side, 0:side]
    Image.fromarray(np.stack([x * 2, y * 2, (x + y)], axis=-1).astype(np.uint8)).save(frame)
    os.utime(frame, (STABLE_MTIME, STABLE_MTIME))  # its hardlinks share it
    database = {}
    for i in range(spec.published_items):
        label = classes[i % len(classes)]
        video = f"v_{label}_g{i:04d}_c01"
        folder = root / protocol["frames_dir"] / label / video
        folder.mkdir(parents=True)
        for n in (1, 2):
            (folder / f"image_{n:05d}.jpg").hardlink_to(frame)
        (folder / "n_frames").write_text("2")
        os.utime(folder / "n_frames", (STABLE_MTIME, STABLE_MTIME))
        database[video] = {"subset": "validation", "annotations": {"label": label}}
    annotation = root / protocol["annotation"]
    annotation.parent.mkdir(parents=True)
    annotation.write_text(json.dumps({"labels": classes, "database": database}))


@pytest.mark.full_index
def test_a_real_model_on_its_complete_index_with_random_weights_is_red_naming_metric_and_band(
        run_suite, request, tmp_path):
    if FULL_INDEX not in (request.config.option.markexpr or ""):
        pytest.skip(f"minutes on a CPU (3,783 videos at full shapes): runs when selected with -m {FULL_INDEX}")
    spec = next(s for s in registry.all_specs() if s.name == "efficient3dcnn")
    weights = tmp_path / "weights"
    write_seeded_checkpoints(weights, (spec.name,))
    data = tmp_path / "data"
    _write_ucf101_split(data / spec.dataset_dir, spec)
    result = run_suite("--profile=full", "--batch-sizes=16", f"--weights-dir={weights}", f"--data-root={data}",
                       f"--models={spec.name}", tests=("test_published.py",))
    result.assert_outcomes(failed=1)
    bands = [f"{m.name} *{m.unit} lies below the published {m.published:g} ± {m.published_band:g}{m.unit} "
             f"({m.published - m.published_band:g} to {m.published + m.published_band:g}): worse than published"
             for m in spec.metrics if m.published is not None]
    result.stdout.fnmatch_lines([f"E * {spec.name} bs16 on onnxruntime (fp32) against the published figures: *"
                                 + "; *".join(bands)])
    row = _published_rows(result)[spec.name]  # applies: every one of the 3,783 listed videos was read
    assert (row["applies"], row["reason"]) == (True, None)
    assert {m["verdict"] for m in row["metrics"].values()} == {"fail"}
