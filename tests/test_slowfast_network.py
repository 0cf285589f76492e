"""SlowFast R50 8x8 network facts: upstream keys and shapes, checkpoint format, fusion wiring."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from harness.checkpoint import Weights, build_network, load_checkpoint
from harness.registry import get
from harness.spec import CheckpointError
from models.slowfast import network
from models.slowfast.spec import identify_foreign

SPEC = get("slowfast")
SMOKE = SPEC.profile("smoke")


@pytest.fixture(scope="module")
def net() -> network.SlowFastRecognizer:
    torch.manual_seed(0)
    model = network.build(SMOKE)
    # informative BN statistics and a wider head, so that outputs depend on every entry
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_mean") or name.endswith("bn.bias"):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            elif name.endswith("running_var") or name.endswith("bn.weight"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name == "cls_head.fc_cls.weight":
                t.copy_(0.05 * torch.randn(t.shape, generator=g))
    return model


def small_video(batch: int = 1, views: int = 1, frames: int = 8, size: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, views, 3, frames, size, size, generator=g)


def test_upstream_key_and_parameter_counts(net):
    state = net.state_dict()
    assert len(state) == SPEC.checkpoint.keys == 642
    assert sum(p.numel() for p in net.parameters()) == SPEC.checkpoint.parameters == 34_565_560
    prefixes = {k.split(".")[0] + "." + k.split(".")[1] for k in state}
    assert prefixes == {"backbone.slow_path", "backbone.fast_path", "cls_head.fc_cls"}


def test_upstream_shapes(net):
    state = net.state_dict()
    expected = {
        "backbone.slow_path.conv1.conv.weight": (64, 3, 1, 7, 7),
        "backbone.fast_path.conv1.conv.weight": (8, 3, 5, 7, 7),
        # lateral fusions: fast channels -> 2x, kernel (7, 1, 1) (fusion_kernel=7)
        "backbone.slow_path.conv1_lateral.conv.weight": (16, 8, 7, 1, 1),
        "backbone.slow_path.layer1_lateral.conv.weight": (64, 32, 7, 1, 1),
        "backbone.slow_path.layer2_lateral.conv.weight": (128, 64, 7, 1, 1),
        "backbone.slow_path.layer3_lateral.conv.weight": (256, 128, 7, 1, 1),
        # slow stages take slow + fused lateral channels
        "backbone.slow_path.layer1.0.conv1.conv.weight": (64, 80, 1, 1, 1),
        "backbone.slow_path.layer2.0.downsample.conv.weight": (512, 320, 1, 1, 1),
        # slow path inflates only res4/res5; the fast path everywhere
        "backbone.slow_path.layer2.3.conv1.conv.weight": (128, 512, 1, 1, 1),
        "backbone.slow_path.layer3.0.conv1.conv.weight": (256, 640, 3, 1, 1),
        "backbone.slow_path.layer4.2.conv1.conv.weight": (512, 2048, 3, 1, 1),
        "backbone.fast_path.layer1.0.conv1.conv.weight": (8, 8, 3, 1, 1),
        "backbone.fast_path.layer4.2.conv3.conv.weight": (256, 64, 1, 1, 1),
        "cls_head.fc_cls.weight": (400, 2304),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("backbone.slow_path.layer4_lateral") for k in state)
    assert not any("lateral" in k for k in state if k.startswith("backbone.fast_path"))


def test_upstream_format_checkpoint_loads_strictly_and_reproduces(net, tmp_path):
    path = tmp_path / SPEC.checkpoint.filename
    torch.save({"meta": {"mmaction2_version": "0.20.0", "epoch": 256}, "state_dict": net.state_dict()}, path)
    weights = load_checkpoint(SPEC, path)
    assert len(weights.state_dict) == 642
    assert weights.provenance["sha256_matches_name"] is False  # our file, not the published one
    reloaded = build_network(SPEC, "smoke", weights)
    video = small_video(batch=2)
    with torch.no_grad():
        assert torch.equal(reloaded(video), net(video))


def test_foreign_state_dict_is_named_and_listed(tmp_path):
    pytorchvideo = {"blocks.0.multipathway_blocks.0.conv.weight": torch.zeros(64, 3, 1, 7, 7),
                    "blocks.6.proj.weight": torch.zeros(400, 2304)}
    path = tmp_path / "slowfast_r50.pyth"
    torch.save({"state_dict": pytorchvideo}, path)
    with pytest.raises(CheckpointError) as err:
        build_network(SPEC, "smoke", load_checkpoint(SPEC, path))
    text = str(err.value)
    assert "pytorchvideo SlowFast" in text
    assert "missing keys (642)" in text and "backbone.slow_path.conv1.conv.weight" in text
    assert "unexpected keys (2)" in text and "blocks.6.proj.weight" in text


def test_other_fusion_kernel_is_a_shape_mismatch(net):
    # slowfast_r50_4x16x1: same keys, lateral kernel 5 and speed ratio 8
    state = dict(net.state_dict())
    state["backbone.slow_path.conv1_lateral.conv.weight"] = torch.zeros(16, 8, 5, 1, 1)
    ours = tuple(net.state_dict()["backbone.slow_path.conv1_lateral.conv.weight"].shape)
    with pytest.raises(CheckpointError) as err:
        build_network(SPEC, "smoke", Weights(state), "slowfast_r50_4x16x1.pth")
    assert str(err.value).endswith("shape mismatches (1): backbone.slow_path.conv1_lateral.conv.weight: "
                                   f"checkpoint (16, 8, 5, 1, 1) vs network {ours}")


def test_identify_foreign(net):
    ours = list(net.state_dict())
    assert identify_foreign(ours) is None
    cases = {
        "pytorchvideo SlowFast": ["blocks.0.multipathway_blocks.0.conv.weight", "blocks.6.proj.weight"],
        "PySlowFast) SlowFast": ["s1.pathway0_stem.conv.weight", "s1_fuse.conv_f2s.weight", "head.projection.weight"],
        "training checkpoint": ["model_state", "optimizer_state", "epoch"],
        "mmaction2 ResNet3d/SlowOnly": ["backbone.conv1.conv.weight", "backbone.layer1.0.conv1.conv.weight",
                                        "cls_head.fc_cls.weight"],
        "mmaction2 recognizer with another backbone": ["backbone.conv1.weight", "cls_head.fc_cls.weight"],
        "DataParallel": ["module." + k for k in ours],
        "torchvision video ResNet": ["stem.0.weight", "layer1.0.conv1.0.weight", "fc.weight"],
    }
    for family, keys in cases.items():
        assert family in (identify_foreign(keys) or ""), family
    r101 = ours + [f"backbone.slow_path.layer3.{i}.conv1.conv.weight" for i in range(6, 23)]
    assert "ResNet-101" in identify_foreign(r101)


def test_index_select_picks_the_frames_of_upstreams_nearest_interpolate():
    # mmaction2's original ResNet3dSlowFast.forward; the port exports index_select instead
    x = torch.randn(1, 3, 32, 4, 4)
    for step in (network.RESAMPLE_RATE, network.RESAMPLE_RATE // network.SPEED_RATIO):
        reference = F.interpolate(x, mode="nearest", scale_factor=(1.0 / step, 1.0, 1.0))
        assert torch.equal(x.index_select(2, torch.arange(0, 32, step)), reference)
    assert torch.arange(0, 32, network.RESAMPLE_RATE).tolist() == [0, 4, 8, 12, 16, 20, 24, 28]


def test_head_concatenates_fast_before_slow():
    head = network.SlowFastHead(400).eval()
    with torch.no_grad():
        head.fc_cls.weight.zero_()
        head.fc_cls.bias.zero_()
        head.fc_cls.weight[0, :256] = 1.0  # class 0 reads the first 256 features
        head.fc_cls.weight[1, 256:] = 1.0  # class 1 reads the other 2048
        logits = head(torch.full((1, 2048, 2, 1, 1), 2.0), torch.full((1, 256, 8, 1, 1), 3.0))
    assert logits[0, 0].item() == pytest.approx(256 * 3.0)
    assert logits[0, 1].item() == pytest.approx(2048 * 2.0)


def test_backbone_feature_shapes(net):
    with torch.no_grad():
        slow, fast = net.backbone(small_video(frames=32, size=56)[:, 0])
    assert tuple(slow.shape) == (1, 2048, 8, 2, 2)  # every 4th frame, stride 32
    assert tuple(fast.shape) == (1, 256, 32, 2, 2)


def test_output_is_softmax_averaged_over_views(net):
    two_views = small_video(batch=2, views=2)
    with torch.no_grad():
        out = net(two_views)
        per_view = [net(two_views[:, v:v + 1]) for v in range(2)]
    assert tuple(out.shape) == (2, 400)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(2))
    torch.testing.assert_close(out, (per_view[0] + per_view[1]) / 2)


def test_seeded_network_is_not_degenerate():
    torch.manual_seed(0)
    model = network.build(SMOKE)
    with torch.no_grad():
        out = model(small_video(batch=2))
    assert torch.isfinite(out).all()
    assert (out.max(dim=1).values - out.min(dim=1).values > 1e-5).all()
    assert not torch.equal(out[0], out[1])
