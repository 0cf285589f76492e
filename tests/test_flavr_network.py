"""FLAVR network facts: upstream's keys and sizes, the checkpoint format, variants, op equivalences."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from harness import checkpoint
from harness.spec import CheckpointError, Profile
from models.flavr import network
from models.flavr.spec import SPEC

SIDE = 16  # the smallest size the three 2x downsamplings and the 7x7 reflect-padded conv allow


def _profile(n_outputs: int = 3) -> Profile:
    shape = (3, SIDE, SIDE)
    return Profile(
        inputs={f"input_{i}": shape for i in range(4)},
        outputs={f"output_{i}": shape for i in range(n_outputs)},
        batch_sizes=(1,),
        generated_samples=1,
    )


def _frames(batch: int = 1, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, 3, SIDE, SIDE, generator=g) for _ in range(4)]


@pytest.fixture(scope="module")
def net4x() -> network.FLAVR:
    torch.manual_seed(0)
    return network.build(_profile())


@pytest.fixture(scope="module")
def sd2x() -> dict:
    """What FLAVR_2x.pth holds once unwrapped: one output, no encoder conv biases."""
    return network.FLAVR(n_inputs=4, n_outputs=1, encoder_bias=False).state_dict()


def test_upstream_key_and_parameter_counts(net4x):
    sd = net4x.state_dict()
    assert len(sd) == SPEC.checkpoint.keys == 76
    assert sum(p.numel() for p in net4x.parameters()) == SPEC.checkpoint.parameters == 42_084_297
    assert net4x.variant == "4x"


@pytest.mark.parametrize(
    "key, shape",
    [
        ("encoder.stem.0.weight", (64, 3, 3, 7, 7)),
        ("encoder.stem.0.bias", (64,)),
        ("encoder.layer1.0.conv1.0.bias", (64,)),
        ("encoder.layer2.0.downsample.0.weight", (128, 64, 1, 1, 1)),
        ("encoder.layer4.1.fg.attn_layer.0.weight", (512, 512, 1, 1, 1)),
        ("decoder.0.conv.0.weight", (256, 512, 3, 3, 3)),
        ("decoder.1.upconv.0.weight", (512, 128, 3, 4, 4)),  # ConvTranspose3d: [in, out, k...]
        ("decoder.4.upconv.1.attn_layer.0.bias", (64,)),
        ("feature_fuse.conv.0.weight", (64, 256, 1, 1)),
        ("outconv.1.weight", (9, 64, 7, 7)),
    ],
)
def test_upstream_key_shapes(net4x, key, shape):
    assert tuple(net4x.state_dict()[key].shape) == shape


def test_no_bias_where_upstream_has_none(net4x):
    sd = net4x.state_dict()
    assert "encoder.layer2.0.downsample.0.bias" not in sd
    assert "feature_fuse.conv.0.bias" not in sd


def _spec(n_outputs: int = 3):
    return dataclasses.replace(SPEC, profiles={**SPEC.profiles, "smoke": _profile(n_outputs)})


def test_upstream_checkpoint_format_loads_strictly(net4x, tmp_path):
    # FLAVR's main.py saves {'epoch', 'state_dict', 'optimizer', 'lr'} from a DataParallel model
    path = tmp_path / "FLAVR_4x.pth"
    state = {"module." + k: v for k, v in net4x.state_dict().items()}
    torch.save({"epoch": 1, "state_dict": state, "lr": 2e-4}, path)
    weights = checkpoint.load_checkpoint(_spec(), path)
    torch.manual_seed(1)  # a different init, so equal outputs prove the load
    fresh = checkpoint.build_network(_spec(), "smoke", weights)

    x = _frames(batch=2)
    with torch.no_grad():
        for a, b in zip(net4x(*x), fresh(*x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_2x_checkpoint_builds_the_2x_variant(sd2x):
    assert len(sd2x) == 59 and "encoder.stem.0.bias" not in sd2x
    net = checkpoint.build_network(_spec(n_outputs=1), "smoke", checkpoint.Weights(sd2x))
    assert net.variant == "2x" and net.n_outputs == 1
    with torch.no_grad():
        out = net(*_frames())
    assert len(out) == 1 and out[0].shape == (1, 3, SIDE, SIDE)


def test_8x_checkpoint_builds_the_8x_variant(net4x):
    sd = dict(net4x.state_dict())
    sd["outconv.1.weight"] = torch.zeros(21, 64, 7, 7)
    sd["outconv.1.bias"] = torch.zeros(21)
    net = checkpoint.build_network(_spec(n_outputs=7), "smoke", checkpoint.Weights(sd))
    assert net.variant == "8x" and net.n_outputs == 7


def test_2x_checkpoint_for_the_4x_spec_is_named(sd2x):
    with pytest.raises(CheckpointError, match=r"holds FLAVR 2x \(1 interpolated frame\(s\), encoder biases off\); "
                                             r"this spec is FLAVR 4x with outputs output_0, output_1, output_2"):
        network.build(_profile(), sd2x)


def test_2x_checkpoint_through_the_loader_names_the_file(sd2x):
    with pytest.raises(CheckpointError, match=r"^FLAVR_2x\.pth: the checkpoint holds FLAVR 2x"):
        checkpoint.build_network(_spec(), "smoke", checkpoint.Weights(sd2x), "FLAVR_2x.pth")


def test_foreign_state_dict_is_rejected_with_key_lists():
    foreign = {"fc.weight": torch.zeros(400, 512), "fc.bias": torch.zeros(400)}
    with pytest.raises(CheckpointError) as err:
        checkpoint.build_network(_spec(), "smoke", checkpoint.Weights(foreign), "r3d18.pth")
    message = str(err.value)
    assert message.startswith("r3d18.pth: does not match flavr's upstream checkpoint")
    # no encoder.stem.0.bias: the loader builds the bias-free encoder and lists its keys
    assert re.search(r"missing keys \(\d+\): encoder\.stem\.0\.weight", message)
    assert "unexpected keys (2): fc.weight, fc.bias" in message


def test_seeded_network_is_not_degenerate(net4x):
    with torch.no_grad():
        out = net4x(*_frames())
    assert len(out) == 3
    for o in out:
        assert o.shape == (1, 3, SIDE, SIDE) and torch.isfinite(o).all() and o.std() > 1e-4


def test_outputs_follow_a_per_channel_offset_of_the_inputs(net4x):
    # the per-sample, per-channel mean is subtracted before the encoder and added back after
    x = _frames()
    offset = torch.tensor([0.1, -0.05, 0.2]).view(1, 3, 1, 1)
    with torch.no_grad():
        base = net4x(*x)
        shifted = net4x(*[f + offset for f in x])
    for a, b in zip(base, shifted):
        torch.testing.assert_close(b - a, offset.expand_as(a), rtol=0, atol=1e-5)


def test_samples_in_a_batch_are_independent(net4x):
    x = _frames(batch=2)
    with torch.no_grad():
        together = net4x(*x)
        alone = net4x(*[f[1:] for f in x])
    for a, b in zip(together, alone):
        torch.testing.assert_close(a[1:], b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(7, 9), (16, 16), (10, 23)])
def test_sliced_reflection_pad_equals_reflection_pad(size):
    x = torch.randn(2, 5, *size)
    torch.testing.assert_close(
        network.ReflectionPad2dSliced(3)(x), torch.nn.ReflectionPad2d(3)(x), rtol=0, atol=0
    )


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")
def test_sliced_reflection_pad_exports_without_pad_op(tmp_path):
    # the Ascend port's form: no reflect-mode Pad reaches ATC, and the values are unchanged
    path = tmp_path / "pad.onnx"
    x = torch.randn(2, 4, 10, 12)
    torch.onnx.export(
        network.ReflectionPad2dSliced(3), (x,), str(path), dynamo=False, opset_version=SPEC.opset,
        input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
    )
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "Pad" not in ops and ops <= {"Slice", "Concat", "Constant"}
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    np.testing.assert_array_equal(got, torch.nn.ReflectionPad2d(3)(x).numpy())
