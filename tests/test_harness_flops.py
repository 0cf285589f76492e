"""FLOP counting from an ONNX graph on a network whose count is known by hand."""
from __future__ import annotations

import pytest
import torch

from harness import flops


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        # 8x8 out, 3x3 taps of which those on the zero padding are left out (per axis 8*3 - 2):
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)  # 2*8 * 3 * 22*22 = 23,232
        self.up = torch.nn.ConvTranspose2d(8, 4, 2, stride=2)  # in 8x8x8: 2*512 * 4*4 = 16,384
        self.fc = torch.nn.Linear(4 * 16 * 16, 10)  # 2 * 10 * 1024 = 20,480

    def forward(self, x):
        return self.fc(self.up(self.conv(x)).flatten(1))


def test_counts_conv_transposed_conv_and_gemm(tmp_path):
    path = tmp_path / "small.onnx"
    torch.onnx.export(Small().eval(), (torch.rand(1, 3, 8, 8),), str(path), dynamo=False, opset_version=11,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    assert flops.gflops_per_sample(path, {"x": (3, 8, 8)}) * 1e9 == pytest.approx(23_232 + 16_384 + 20_480)


def test_the_count_is_cached_by_the_graphs_content(tmp_path, monkeypatch):
    path = tmp_path / "small.onnx"
    torch.onnx.export(Small().eval(), (torch.rand(1, 3, 8, 8),), str(path), dynamo=False, opset_version=11,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    cache_dir = tmp_path / "cache"
    first = flops.gflops_per_sample(path, {"x": (3, 8, 8)}, cache_dir)
    counted = []
    monkeypatch.setattr(flops, "_count", lambda *args: counted.append(args) or 0.0)
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
def test_a_convolution_counts_the_taps_that_read_or_write_inside_the_tensor(tmp_path, layer):
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
    assert flops.gflops_per_sample(path, {"x": shape}) * 1e9 == pytest.approx(2 * per_pair * pairs)
