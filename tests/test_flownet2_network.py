"""FlowNet2's network against upstream's checkpoint format and facts."""
import pytest
import torch

from harness import checkpoint
from harness.registry import get
from harness.spec import CheckpointError, Profile
from models.flownet2.network import identify_foreign

pytestmark = pytest.mark.usefixtures("single_thread")

SPEC = get("flownet2")
SMALL = (1, 3, 64, 128)


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    return SPEC.build_network(SPEC.profile("smoke"))


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(*SMALL, generator=g), torch.randn(*SMALL, generator=g)


@pytest.fixture(scope="module")
def flow(network, inputs):
    with torch.no_grad():
        return network(*inputs)


def test_upstream_key_and_parameter_counts(network):
    state = network.state_dict()
    assert len(state) == SPEC.checkpoint.keys == 220
    assert sum(t.numel() for t in state.values()) == SPEC.checkpoint.parameters == 162_518_834
    # upstream's sub-network names and layer naming
    assert {k.split(".", 1)[0] for k in state} == {
        "flownetc", "flownets_1", "flownets_2", "flownets_d", "flownetfusion",
    }
    assert state["flownetc.conv3_1.0.weight"].shape == (256, 473, 3, 3)  # 32 redir + 441 corr
    assert state["flownets_1.conv1.0.weight"].shape == (64, 12, 7, 7)
    assert state["flownetfusion.conv0.0.weight"].shape == (64, 11, 3, 3)
    assert "flownets_1.upsampled_flow6_to_5.bias" not in state  # FlowNetS: no bias there
    assert state["flownets_d.inter_conv5.0.weight"].shape == (512, 1026, 3, 3)


def test_output_shape_and_not_degenerate(flow):
    assert flow.shape == (1, 2, 64, 128)
    assert torch.isfinite(flow).all()
    assert flow.std() > 1e-3


def test_upstream_state_dict_loads_strictly_and_reproduces(network, inputs, flow):
    # through the harness's loader from memory: the file format ({'epoch', 'state_dict',
    # 'best_EPE'}) is read in test_checkpoints.py, and 650 MB per file would dominate here
    torch.manual_seed(123)  # build_network seeds its own init, overwritten by the load
    fresh = checkpoint.build_network(SPEC, "smoke", checkpoint.Weights(dict(network.state_dict())))
    with torch.no_grad():
        torch.testing.assert_close(fresh(*inputs), flow, rtol=0, atol=0)


def test_foreign_state_dict_fails_with_key_lists(network):
    # FlowNet2-CS: upstream's first two stages only
    state = network.state_dict()
    partial = {k: v for k, v in state.items() if k.startswith(("flownetc.", "flownets_1."))}
    with pytest.raises(CheckpointError) as err:
        checkpoint.build_network(SPEC, "smoke", checkpoint.Weights(partial), "FlowNet2-CS_checkpoint.pth.tar")
    message = str(err.value)
    assert message.startswith("FlowNet2-CS_checkpoint.pth.tar: does not match flownet2's upstream checkpoint")
    assert "It looks like a FlowNet2-CS (upstream models.FlowNet2CS) checkpoint." in message
    missing = [k for k in state if k not in partial]
    assert f"missing keys ({len(missing)}): {missing[0]}" in message

    # DataParallel's 'module.' prefix, which upstream's FlowNet2 checkpoint does not carry
    prefixed = {f"module.{k}": v for k, v in state.items()}
    with pytest.raises(CheckpointError, match=r"unexpected keys \(220\): module\.flownetc\."):
        checkpoint.build_network(SPEC, "smoke", checkpoint.Weights(prefixed), "wrapped.pth.tar")


def test_identify_foreign_names_siblings_and_not_itself(network):
    state = network.state_dict()

    def submodule(prefix):
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    assert identify_foreign(state) is None
    assert identify_foreign(submodule("flownetc.")) == "FlowNet2-C (upstream models.FlowNet2C)"
    assert identify_foreign(submodule("flownets_1.")) == "FlowNet2-S (upstream models.FlowNet2S)"
    assert identify_foreign(submodule("flownets_d.")) == "FlowNet2-SD (upstream models.FlowNet2SD)"


def test_build_rejects_sides_not_multiple_of_64():
    profile = Profile(inputs={"x1": (3, 436, 1024), "x2": (3, 436, 1024)},
                      outputs={"flow": (2, 436, 1024)}, batch_sizes=(1,), generated_samples=1)
    with pytest.raises(ValueError, match="multiples of 64"):
        SPEC.build_network(profile)
