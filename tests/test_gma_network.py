"""GMA's network against upstream's checkpoint format: keys, parameter count, strict loading."""
from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from harness.checkpoint import build_network, load_checkpoint, seeded_weights
from harness.registry import get
from harness.spec import CheckpointError
from models.gma.network import build

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = get("gma")
SMOKE = SPEC.profile("smoke")


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build(SMOKE)


@pytest.fixture(scope="module")
def pair():
    g = torch.Generator().manual_seed(0)
    shape = (1, *SMOKE.inputs["image1"])
    return 255 * torch.rand(shape, generator=g), 255 * torch.rand(shape, generator=g)


def test_upstream_key_and_parameter_counts(net):
    sd = net.state_dict()
    assert len(sd) == SPEC.checkpoint.keys == 185
    assert sum(p.numel() for p in net.parameters()) == SPEC.checkpoint.parameters == 5_879_873
    # buffers and the unused position embeddings that gma-sintel.pth holds
    for key, shape in {
        "att.pos_emb.rel_ind": (160, 160),
        "att.pos_emb.rel_height.weight": (319, 128),
        "att.pos_emb.rel_width.weight": (319, 128),
        "att.to_qk.weight": (256, 128, 1, 1),
        "update_block.aggregator.gamma": (1,),
        "update_block.encoder.convc1.weight": (256, 324, 1, 1),
        "update_block.gru.convz1.weight": (128, 512, 1, 5),
        "update_block.mask.2.weight": (576, 256, 1, 1),
        "fnet.conv2.weight": (256, 128, 1, 1),
        "cnet.conv2.weight": (256, 128, 1, 1),
        # batch norm shared by 'norm3' and 'downsample.1', stored under both names
        "cnet.layer2.0.norm3.running_mean": (96,),
        "cnet.layer2.0.downsample.1.running_mean": (96,),
        "cnet.norm1.num_batches_tracked": (),
    }.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any(k.startswith("fnet.") and "norm" in k for k in sd)  # instance norm: no state
    assert sd["att.pos_emb.rel_ind"][0, 0] == 159 and sd["att.pos_emb.rel_ind"][0, 159] == 318


def test_forward_shape_and_non_degenerate(net, pair):
    with torch.no_grad():
        out = net(*pair)
    assert out.shape == (1, *SMOKE.outputs["out1"])
    assert torch.isfinite(out).all() and out.std() > 0.01


def test_iterations_come_from_the_protocol(pair):
    assert SPEC.protocol_for("smoke")["iters"] == SPEC.protocol_for("full")["iters"] == 6
    torch.manual_seed(0)
    one = build(dataclasses.replace(SMOKE, protocol={**SMOKE.protocol, "iters": 1}))
    assert one.iters == 1
    with pytest.raises(ValueError, match="iters=0"):
        build(dataclasses.replace(SMOKE, protocol={**SMOKE.protocol, "iters": 0}))


def test_upstream_format_checkpoint_loads_strictly_and_reproduces(tmp_path, net, pair):
    # upstream saves DataParallel(model).state_dict(): a bare dict, every key prefixed 'module.'
    net = copy.deepcopy(net)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / SPEC.checkpoint.filename
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    weights = load_checkpoint(SPEC, path)
    assert len(weights.state_dict) == 185 and not any(k.startswith("module.") for k in weights.state_dict)
    torch.manual_seed(123)  # a different init, fully overwritten by the strict load
    loaded = build_network(SPEC, "smoke", weights)
    with torch.no_grad():
        torch.testing.assert_close(loaded(*pair), net(*pair), rtol=0, atol=0)


def test_seeded_build_is_deterministic(pair):
    a, b = build_network(SPEC, "smoke", seeded_weights()), build_network(SPEC, "smoke", seeded_weights())
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_foreign_state_dict_fails_with_key_lists(net):
    # RAFT's checkpoints share GMA's encoders and most of its update block but have no
    # attention or aggregator, and a narrower GRU input
    raft = {k: v for k, v in net.state_dict().items()
            if not k.startswith(("att.", "update_block.aggregator."))}
    for name in ("convz1", "convr1", "convq1", "convz2", "convr2", "convq2"):
        w = raft[f"update_block.gru.{name}.weight"]
        raft[f"update_block.gru.{name}.weight"] = w[:, :384]
    with pytest.raises(CheckpointError) as err:
        build_network(SPEC, "smoke", dataclasses.replace(seeded_weights(), state_dict=raft), "raft-sintel.pth")
    message = str(err.value)
    assert "raft-sintel.pth" in message and "RAFT" in message
    assert "missing keys (6)" in message and "att.to_qk.weight" in message
    assert "update_block.gru.convz1.weight: checkpoint (128, 384, 1, 5) vs network (128, 512, 1, 5)" in message

    flownet2 = {"flownetc.conv1.0.weight": torch.zeros(64, 6, 7, 7)}
    assert "FlowNet2" in SPEC.identify_foreign(list(flownet2))
    assert SPEC.identify_foreign(list(net.state_dict())) is None
