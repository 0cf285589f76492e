"""The known case of the Ascend fp16 preview: a Conv whose large weights (x300) feed an
InstanceNorm activations of a few hundred, so that the sum of squares over its 16x16 plane
(~256 x 100^2) leaves fp16's range (65504) while every single activation stays inside it; a
ReLU and a 1x1 Conv follow. In fp32 nothing overflows."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from harness.spec import Elementwise

INPUT = "x"
OUTPUT = "y"
SHAPE = (1, 3, 16, 16)
# the fields of a ModelSpec the preview and keep_fp32 read (no keep list of its own)
SPEC = SimpleNamespace(name="instance-norm-known-case", output_names=(OUTPUT,), compile_options={},
                       elementwise={"fp32": Elementwise(rtol=1e-4, atol=1e-4),
                                    "fp16": Elementwise(rtol=0.02, atol=0.05)})


class LargeActivations(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.norm = torch.nn.InstanceNorm2d(4, affine=True)
        self.head = torch.nn.Conv2d(4, 2, 1)
        with torch.no_grad():
            self.conv.weight.mul_(300.0)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.conv(x))))


def build(folder: Path) -> tuple[Path, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the ONNX as the harness exports it, one batch of feeds, PyTorch's outputs)."""
    network = LargeActivations().eval()
    x = torch.rand(*SHAPE, generator=torch.Generator().manual_seed(1))
    path = Path(folder) / "instance_norm.onnx"
    torch.onnx.export(network, x, str(path), input_names=[INPUT], output_names=[OUTPUT], opset_version=12,
                      dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, dynamo=False)
    with torch.no_grad():
        reference = {OUTPUT: network(x).numpy()}
    return path, {INPUT: x.numpy()}, reference
