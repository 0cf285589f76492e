"""FLOP counting from an ONNX graph on a network whose count is known by hand."""
from __future__ import annotations

import pytest
import torch

from harness import flops


class Small(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)  # 8x8 out: 2*8*8*8 * 3*9 = 27,648
        self.up = torch.nn.ConvTranspose2d(8, 4, 2, stride=2)  # in 8x8x8: 2*512 * 4*4 = 16,384
        self.fc = torch.nn.Linear(4 * 16 * 16, 10)  # 2 * 10 * 1024 = 20,480

    def forward(self, x):
        return self.fc(self.up(self.conv(x)).flatten(1))


def test_counts_conv_transposed_conv_and_gemm(tmp_path):
    path = tmp_path / "small.onnx"
    torch.onnx.export(Small().eval(), (torch.rand(1, 3, 8, 8),), str(path), dynamo=False, opset_version=11,
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    assert flops.gflops_per_sample(path, {"x": (3, 8, 8)}) * 1e9 == pytest.approx(27_648 + 16_384 + 20_480)


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
