"""GMA's export-friendly ops compute what upstream's ops compute, in PyTorch and in ONNX Runtime.

The references below restate upstream's formulas (zacjiang/GMA@2f1fd29: CorrBlock with
bilinear_sampler -> F.grid_sample, einsum attention, F.unfold convex upsampling) with the
PyTorch ops upstream uses, so each replacement is checked against the op it replaces.
"""
from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from models.gma import network as gma


def grid_sample_window(corr: torch.Tensor, centre: torch.Tensor, r: int) -> torch.Tensor:
    """Upstream's CorrBlock lookup for one level: pixel coords -> [-1, 1] -> grid_sample."""
    h, w = corr.shape[-2:]
    d = torch.linspace(-r, r, 2 * r + 1)
    delta = torch.stack(torch.meshgrid(d, d, indexing="ij"), dim=-1)  # (dy, dx) pairs, as upstream
    coords = centre.reshape(-1, 1, 1, 2) + delta.view(1, 2 * r + 1, 2 * r + 1, 2)
    x, y = coords.split([1, 1], dim=-1)
    grid = torch.cat([2 * x / (w - 1) - 1, 2 * y / (h - 1) - 1], dim=-1)
    out = F.grid_sample(corr, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.reshape(corr.shape[0], -1)


def unfold_upsample(flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Upstream's RAFTGMA.upsample_flow."""
    n, _, h, w = flow.shape
    mask = torch.softmax(mask.view(n, 1, 9, 8, 8, h, w), dim=2)
    up = F.unfold(8 * flow, [3, 3], padding=1).view(n, 2, 9, 1, 1, h, w)
    up = torch.sum(mask * up, dim=2).permute(0, 1, 4, 2, 5, 3)
    return up.reshape(n, 2, 8 * h, 8 * w)


@pytest.mark.parametrize("size", [(2, 2), (2, 3), (7, 16), (13, 32)])
def test_sample_window_matches_grid_sample(size):
    g = torch.Generator().manual_seed(0)
    h, w = size
    n = 300
    corr = torch.randn(n, 1, h, w, generator=g)
    # centres inside, on the border, partly and wholly outside (a window reaches 4 px further)
    centre = torch.stack([
        torch.empty(n).uniform_(-12, w + 12, generator=g),
        torch.empty(n).uniform_(-12, h + 12, generator=g),
    ], dim=1)
    centre[:20] = torch.floor(centre[:20])  # integer positions: fractional part 0
    centre[20] = torch.tensor([w - 1.0, h - 1.0])
    centre[21] = torch.tensor([-40.0, 3.5])
    ours = gma.sample_window(corr, centre, 4)
    ref = grid_sample_window(corr, centre, 4)
    assert ours.shape == (n, 81)
    torch.testing.assert_close(ours, ref, rtol=0, atol=2e-5)
    assert torch.count_nonzero(ours[21]) == 0  # the whole window lies left of the map


def test_window_order_is_x_offset_major():
    """Entry i*9+j is the sample at (x + i - 4, y + j - 4), as upstream's window pairs them."""
    h, w = 20, 30
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    corr = (100 * xs + ys).float()[None, None]  # value encodes the position
    out = gma.sample_window(corr, torch.tensor([[10.0, 8.0]]), 4).reshape(9, 9)
    for i in range(9):
        for j in range(9):
            assert out[i, j] == 100 * (10 + i - 4) + (8 + j - 4)


def test_lookup_matches_upstream_corr_block():
    g = torch.Generator().manual_seed(1)
    b, c, h, w = 2, 16, 16, 20
    f1, f2 = torch.randn(b, c, h, w, generator=g), torch.randn(b, c, h, w, generator=g)
    pyramid = gma.correlation_pyramid(f1, f2, 4)
    # upstream: matmul of [B, HW, C] x [B, C, HW] / sqrt(tensor(C)), avg-pooled per level
    corr = torch.matmul(f1.view(b, c, h * w).transpose(1, 2), f2.view(b, c, h * w))
    corr = (corr / torch.sqrt(torch.tensor(c).float())).reshape(b * h * w, 1, h, w)
    for level in range(4):
        torch.testing.assert_close(pyramid[level], corr, rtol=1e-6, atol=1e-6)
        corr = F.avg_pool2d(corr, 2, stride=2)
    coords = gma.coords_grid(h, w) + 5 * torch.randn(b, 2, h, w, generator=g)
    centre = coords.permute(0, 2, 3, 1).reshape(-1, 2)
    ref = torch.cat([grid_sample_window(p, centre / 2**i, 4) for i, p in enumerate(pyramid)], dim=1)
    ref = ref.view(b, h, w, -1).permute(0, 3, 1, 2)
    torch.testing.assert_close(gma.lookup(pyramid, coords, 4), ref, rtol=0, atol=2e-5)


def test_coords_grid_is_x_then_y():
    grid = gma.coords_grid(3, 4)
    assert grid.shape == (1, 2, 3, 4)
    assert grid[0, 0, 2, 3] == 3 and grid[0, 1, 2, 3] == 2


def test_convex_upsample_matches_unfold():
    g = torch.Generator().manual_seed(2)
    flow = 3 * torch.randn(2, 2, 5, 7, generator=g)
    mask = 4 * torch.randn(2, 576, 5, 7, generator=g)
    torch.testing.assert_close(gma.convex_upsample(flow, mask), unfold_upsample(flow, mask),
                               rtol=1e-5, atol=1e-5)


def test_attention_and_aggregate_match_einsum():
    torch.manual_seed(3)
    att, agg = gma.Attention(8, dim_head=8), gma.Aggregate(8)
    with torch.no_grad():
        agg.gamma.fill_(0.5)
    fmap, motion = torch.randn(2, 8, 4, 5), torch.randn(2, 8, 4, 5)
    q, k = att.to_qk(fmap).chunk(2, dim=1)
    sim = torch.einsum("bdxy,bduv->bxyuv", 8**-0.5 * q, k).reshape(2, 20, 20)
    attn = sim.softmax(dim=-1)
    v = agg.to_v(motion)
    ref = motion + 0.5 * torch.einsum("bij,bdj->bdi", attn, v.flatten(2)).reshape(2, 8, 4, 5)
    with torch.no_grad():
        torch.testing.assert_close(att(fmap), attn, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(agg(attn, motion), ref, rtol=1e-5, atol=1e-5)


class _Ops(torch.nn.Module):
    def forward(self, corr, centre, flow, mask):
        return gma.sample_window(corr, centre, 4), gma.convex_upsample(flow, mask)


def test_ops_export_at_opset_12_and_agree_in_onnxruntime(tmp_path):
    g = torch.Generator().manual_seed(4)
    corr = torch.randn(40, 1, 6, 9, generator=g)
    centre = torch.empty(40, 2).uniform_(-8, 14, generator=g)
    flow, mask = torch.randn(2, 2, 4, 5, generator=g), torch.randn(2, 576, 4, 5, generator=g)
    args = (corr, centre, flow, mask)
    path = tmp_path / "ops.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on shape-derived Python values
        torch.onnx.export(_Ops(), args, str(path), dynamo=False, opset_version=12,
                          input_names=["corr", "centre", "flow", "mask"],
                          output_names=["win", "up"],
                          dynamic_axes={"corr": {0: "n"}, "centre": {0: "n"}, "flow": {0: "b"},
                                        "mask": {0: "b"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # other leading sizes than the export's, to show nothing batch-dependent was baked in
    args = (corr[:25], centre[:25], flow[:1], mask[:1])
    win, up = session.run(None, {k: v.numpy() for k, v in zip(["corr", "centre", "flow", "mask"], args)})
    np.testing.assert_allclose(win, grid_sample_window(args[0], args[1], 4).numpy(), rtol=0, atol=2e-5)
    np.testing.assert_allclose(up, unfold_upsample(args[2], args[3]).numpy(), rtol=1e-5, atol=1e-5)
