"""FLOP counting from an ONNX graph on a network whose count is known by hand, and against an
independent count (tests/independent_flops.py) on the five models."""
from __future__ import annotations

import pytest
import torch

from harness import flops, registry, stages
from independent_flops import profiled_gflops


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        # 8x8 out, 3x3 taps: 2*8 * 3 * 64*9 = 27,648, of which those on the zero padding are
        # left out of the useful count (per axis 8*3 - 2): 2*8 * 3 * 22*22 = 23,232
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.up = torch.nn.ConvTranspose2d(8, 4, 2, stride=2)  # in 8x8x8: 2*512 * 4*4 = 16,384
        self.fc = torch.nn.Linear(4 * 16 * 16, 10)  # 2 * 10 * 1024 = 20,480

    def forward(self, x):
        return self.fc(self.up(self.conv(x)).flatten(1))


def test_counts_conv_transposed_conv_and_gemm(tmp_path):
    path = tmp_path / "small.onnx"
    torch.onnx.export(Small().eval(), (torch.rand(1, 3, 8, 8),), str(path), dynamo=False, opset_version=11,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    counted = flops.count(path, {"x": (3, 8, 8)})
    assert counted.gflops * 1e9 == pytest.approx(27_648 + 16_384 + 20_480)
    assert counted.useful_gflops * 1e9 == pytest.approx(23_232 + 16_384 + 20_480)
    assert counted.uncounted == ()
    assert counted.weight_elements == 8 * 3 * 9 + 8 + 8 * 4 * 4 + 4 + 10 * 1024 + 10
    assert counted.activation_elements == 8 * 64 + 4 * 256 + 1024 + 10  # conv, up, flatten, fc


class Attention(torch.nn.Module):
    """A MatMul whose operand comes through a Reshape computed from Shape: ONNX's own shape
    inference leaves it unknown (as all of GMA's attention and correlation MatMuls)."""

    def forward(self, x):
        b, c, h, w = x.shape
        q = x.reshape(b, c, h * w)
        return torch.matmul(q.transpose(1, 2), q)  # (hw x c) @ (c x hw): 2 * (hw)^2 * c


def test_a_matmul_behind_a_computed_reshape_is_counted(tmp_path):
    path = tmp_path / "attention.onnx"
    torch.onnx.export(Attention().eval(), (torch.rand(1, 4, 3, 5),), str(path), dynamo=False, opset_version=13,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}})
    counted = flops.count(path, {"x": (4, 3, 5)})
    assert counted.uncounted == () and counted.gflops * 1e9 == pytest.approx(2 * 15 * 15 * 4)


def test_a_node_that_cannot_be_counted_is_named_not_counted_as_zero(tmp_path):
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("Einsum", ["a", "b"], ["c"], name="contract", equation="ij,jk->ik")], "g",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [3, 3]) for x in ("a", "b")],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [3, 3])])
    save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "e.onnx"))
    counted = flops.count(tmp_path / "e.onnx", {})
    assert counted.uncounted == ("contract (Einsum): no counting rule for this op",)


def test_the_count_is_cached_by_the_graphs_content(tmp_path, monkeypatch):
    path = tmp_path / "small.onnx"
    torch.onnx.export(Small().eval(), (torch.rand(1, 3, 8, 8),), str(path), dynamo=False, opset_version=11,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    cache_dir = tmp_path / "cache"
    first = flops.gflops_per_sample(path, {"x": (3, 8, 8)}, cache_dir)
    counted = []
    monkeypatch.setattr(flops, "_count", lambda *args: counted.append(args) or flops.GraphCount(0.0, 0.0, (), 0, 0))
    assert flops.gflops_per_sample(path, {"x": (3, 8, 8)}, cache_dir) == first and not counted
    flops.gflops_per_sample(path, {"x": (3, 16, 16)}, cache_dir)
    assert len(counted) == 1, "other shapes are another count"
    path.write_bytes(path.read_bytes() + b" ")  # another graph (not a cache artifact: its sha256)
    flops.gflops_per_sample(path, {"x": (3, 8, 8)}, cache_dir)
    assert len(counted) == 2


@pytest.mark.parametrize("layer", [
    torch.nn.Conv2d(2, 4, 3, stride=2, padding=1),
    torch.nn.Conv2d(2, 4, 3, padding=2, dilation=2),
    torch.nn.Conv3d(2, 4, (3, 3, 3), stride=(1, 2, 2), padding=1),
    torch.nn.ConvTranspose2d(2, 4, 4, stride=2, padding=1),
    torch.nn.ConvTranspose3d(2, 4, (3, 4, 4), stride=(1, 2, 2), padding=1),
], ids=["strided", "dilated", "3d", "transposed", "transposed-3d"])
def test_the_useful_count_keeps_the_taps_that_read_or_write_inside_the_tensor(tmp_path, layer):
    """Against the convolution itself: run on ones with unit weights and no bias, each output
    (Conv) or the whole output (ConvTranspose) sums exactly the taps that land inside."""
    shape = (2, 5, 7, 6) if isinstance(layer, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)) else (2, 7, 6)
    path = tmp_path / "conv.onnx"
    torch.onnx.export(layer.eval(), (torch.rand(1, *shape),), str(path), dynamo=False, opset_version=11,
                      input_names=["x"], output_names=["y"])
    ones = type(layer)(1, 1, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                       dilation=layer.dilation, bias=False)
    torch.nn.init.ones_(ones.weight)
    with torch.no_grad():
        pairs = ones(torch.ones(1, 1, *shape[1:])).sum().item()
    per_pair = (layer.out_channels if isinstance(layer, torch.nn.Conv2d | torch.nn.Conv3d) else layer.in_channels) \
        * layer.weight.shape[1]
    assert flops.count(path, {"x": shape}).useful_gflops * 1e9 == pytest.approx(2 * per_pair * pairs)


@pytest.mark.parametrize("model", [s.name for s in registry.all_specs()])
def test_the_standard_count_is_within_one_percent_of_an_independent_count(suite_cache, tmp_path, model):
    """The graph's shapes inferred here against the shapes ONNX Runtime ran at (its profile), at
    the smoke shapes; nothing left uncounted."""
    spec = registry.get(model)
    onnx_path = stages.onnx_for(spec, "smoke", suite_cache)
    shapes = spec.profile("smoke").inputs
    counted = flops.count(onnx_path, shapes)
    assert counted.uncounted == ()
    assert counted.gflops == pytest.approx(profiled_gflops(onnx_path, shapes, tmp_path), rel=0.01)
    assert counted.useful_gflops <= counted.gflops
