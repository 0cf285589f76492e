"""Efficient-3DCNNs MobileNetV2 against upstream's checkpoint format and facts."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from harness import checkpoint, export
from harness.registry import get
from harness.spec import CheckpointError, Profile
from models.efficient3dcnn.network import InvertedResidual, build

SPEC = get("efficient3dcnn")
SMALL = Profile(inputs={"image": (3, 16, 32, 32)}, outputs={"class": (101,)}, batch_sizes=(1,),
                generated_samples=1)


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return build(SMALL)


@pytest.fixture(scope="module")
def clips():
    return torch.randn((2, 3, 16, 32, 32), generator=torch.Generator().manual_seed(1)) * 60.0


@pytest.fixture(scope="module")
def logits(network, clips):
    with torch.no_grad():
        return network(clips)


def test_upstream_key_and_parameter_counts(network):
    state = network.state_dict()
    assert len(state) == SPEC.checkpoint.keys == 314
    params = sum(p.numel() for p in network.parameters())
    assert params == SPEC.checkpoint.parameters == 2_483_429
    keys = list(state)
    assert keys[:2] == ["features.0.0.weight", "features.0.1.weight"]
    assert keys[-3:] == ["features.18.1.num_batches_tracked", "classifier.1.weight", "classifier.1.bias"]
    assert state["features.1.conv.0.weight"].shape == (32, 1, 3, 3, 3)  # t=1: no expansion layer
    assert state["features.2.conv.0.weight"].shape == (96, 16, 1, 1, 1)
    assert state["features.17.conv.6.weight"].shape == (320, 960, 1, 1, 1)
    assert state["features.18.0.weight"].shape == (1280, 320, 1, 1, 1)
    assert state["classifier.1.weight"].shape == (101, 1280)


def test_residual_blocks_as_upstream(network):
    # upstream adds the shortcut when stride is (1,1,1) and channels are kept: 10 of 17 blocks
    flags = [m.residual for m in network.features if isinstance(m, InvertedResidual)]
    assert len(flags) == 17
    assert [i for i, r in enumerate(flags, start=1) if r] == [3, 5, 6, 8, 9, 10, 12, 13, 15, 16]


def test_seeded_outputs_finite_and_not_degenerate(logits):
    assert logits.shape == (2, 101)
    assert torch.isfinite(logits).all()
    assert logits.std(dim=1).min() > 0.1  # classes do not tie
    assert (logits[0] - logits[1]).abs().max() > 1e-2  # depends on the input


def test_seeded_weights_do_not_depend_on_profile():
    torch.manual_seed(0)
    a = build(SMALL).state_dict()
    torch.manual_seed(0)
    b = build(SPEC.profile("full")).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_rejects_sizes_upstream_rejects():
    odd = Profile(inputs={"image": (3, 16, 100, 100)}, outputs={"class": (101,)}, batch_sizes=(1,),
                  generated_samples=1)
    with pytest.raises(ValueError, match="multiples of 16"):
        build(odd)


def test_upstream_checkpoint_file_loads_strictly_and_reproduces(network, clips, logits, tmp_path):
    path = tmp_path / SPEC.checkpoint.filename
    # upstream's main.py saves {'epoch', 'arch', 'state_dict', 'optimizer', 'best_prec1'} of a
    # DataParallel model, hence the 'module.' prefix
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
    torch.save({"epoch": 30, "arch": "mobilenetv2",
                "state_dict": {f"module.{k}": v for k, v in network.state_dict().items()},
                "optimizer": optimizer.state_dict(), "best_prec1": 0.81}, path)
    spec = _spec_with(SMALL)
    weights = checkpoint.load_checkpoint(spec, path)
    assert len(weights.state_dict) == 314 and "features.0.0.weight" in weights.state_dict
    fresh = checkpoint.build_network(spec, "smoke", weights)  # seeds its own init, then loads
    with torch.no_grad():
        assert torch.equal(fresh(clips), logits)


def test_kinetics_head_fails_with_the_mismatched_key(network):
    state = dict(network.state_dict())
    state["classifier.1.weight"] = torch.zeros(600, 1280)  # the Kinetics-600 checkpoint's head
    state["classifier.1.bias"] = torch.zeros(600)
    with pytest.raises(CheckpointError) as err:
        checkpoint.build_network(_spec_with(SMALL), "smoke", checkpoint.Weights(state), "kinetics_mobilenetv2.pth")
    assert str(err.value).endswith(
        "shape mismatches (2): classifier.1.weight: checkpoint (600, 1280) vs network (101, 1280), "
        "classifier.1.bias: checkpoint (600,) vs network (101,)")
    assert str(err.value).startswith("kinetics_mobilenetv2.pth: does not match efficient3dcnn's upstream checkpoint")


def test_foreign_checkpoint_fails_with_key_lists_and_names_its_family(network):
    resnet = {"conv1.weight": torch.zeros(64, 3, 7, 7, 7), "bn1.weight": torch.ones(64),
              "layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3, 3), "fc.weight": torch.zeros(101, 512)}
    assert "ResNet" in SPEC.identify_foreign(list(resnet))
    mobilenet_v1 = ["features.0.0.weight", "features.1.conv1.weight", "features.1.bn1.weight"]
    assert "MobileNet (v1)" in SPEC.identify_foreign(mobilenet_v1)
    assert SPEC.identify_foreign(list(network.state_dict())) is None
    with pytest.raises(CheckpointError, match=r"(?s)resnet18\.pth.*ResNet.*missing keys \(314\): features\.0\.0\.weight"
                                              r".*unexpected keys \(4\): conv1\.weight, bn1\.weight, layer1\.0\.conv1\.weight"):
        checkpoint.build_network(SPEC, "smoke", checkpoint.Weights(resnet), "resnet18.pth")


def test_full_extent_average_pool_is_the_global_mean(network):
    features = torch.randn((2, 1280, 1, 4, 4), generator=torch.Generator().manual_seed(2))
    pooled = F.avg_pool3d(features, (1, 4, 4)).flatten(1)
    assert torch.allclose(pooled, features.mean(dim=(2, 3, 4)), atol=1e-6)
    # the whole forward: features, global mean, classifier, as upstream composes them
    clip = torch.randn((1, 3, 16, 64, 64), generator=torch.Generator().manual_seed(3)) * 60.0
    with torch.no_grad():
        composed = network.classifier(network.features(clip).mean(dim=(2, 3, 4)))
        assert torch.allclose(network(clip), composed, atol=1e-5)


def test_onnx_export_standard_ops_and_onnxruntime_match(network, tmp_path):
    raw, simplified = tmp_path / "raw.onnx", tmp_path / "sim.onnx"
    spec = _spec_with(SMALL)
    export.export_onnx(spec, network, "smoke", raw)
    export.simplify(raw, simplified)
    ops = export.op_types(simplified)
    assert set(ops.values()) == {""}  # the standard domain only
    assert set(ops) <= {"Conv", "Clip", "Add", "AveragePool", "Flatten", "Gemm", "Constant"}
    contract = export.io_contract(simplified)
    assert contract["inputs"]["image"]["shape"] == ("batch", 3, 16, 32, 32)
    assert contract["outputs"]["class"]["shape"] == ("batch", 101)
    clips = np.random.default_rng(4).normal(0, 60, (2, 3, 16, 32, 32)).astype(np.float32)
    session = ort.InferenceSession(str(simplified), providers=["CPUExecutionProvider"])
    (deployed,) = session.run(None, {"image": clips})
    with torch.no_grad():
        reference = network(torch.from_numpy(clips)).numpy()
    tol = SPEC.elementwise["fp32"]
    np.testing.assert_allclose(deployed, reference, rtol=tol.rtol, atol=tol.atol)


def _spec_with(profile: Profile):
    return replace(SPEC, profiles={**SPEC.profiles, "smoke": profile})
