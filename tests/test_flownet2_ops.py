"""FlowNet2's replacements for upstream's CUDA layers equal their definitions, in PyTorch and
in ONNX Runtime at opset 11."""
import io
import math
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from models.flownet2.network import channel_norm, correlation, resample2d, upsample4


def correlation_by_definition(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Upstream's kernel (pad 20, kernel 1, max displacement 20, stride1 1, stride2 2), one
    output element at a time: sum over channels divided by kernel_size**2 * C."""
    n, c, h, w = a.shape
    radius = 20 // 2
    out = np.zeros((n, (2 * radius + 1) ** 2, h, w))
    for tj in range(-radius, radius + 1):
        for ti in range(-radius, radius + 1):
            channel = (tj + radius) * (2 * radius + 1) + (ti + radius)
            for y in range(h):
                for x in range(w):
                    y2, x2 = y + 2 * tj, x + 2 * ti
                    if 0 <= y2 < h and 0 <= x2 < w:
                        out[:, channel, y, x] = (a[:, :, y, x] * b[:, :, y2, x2]).sum(1) / c
    return out


def resample_by_kernel(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Upstream's Resample2d kernel per pixel: floor, fractional weights, clamped corners."""
    n, c, h, w = image.shape
    out = np.zeros_like(image)
    for b in range(n):
        for y in range(h):
            for x in range(w):
                xf, yf = x + flow[b, 0, y, x], y + flow[b, 1, y, x]
                alpha, beta = xf - math.floor(xf), yf - math.floor(yf)
                left, right = (min(max(math.floor(xf) + k, 0), w - 1) for k in (0, 1))
                top, bottom = (min(max(math.floor(yf) + k, 0), h - 1) for k in (0, 1))
                out[b, :, y, x] = (
                    (1 - alpha) * (1 - beta) * image[b, :, top, left]
                    + alpha * (1 - beta) * image[b, :, top, right]
                    + (1 - alpha) * beta * image[b, :, bottom, left]
                    + alpha * beta * image[b, :, bottom, right]
                )
    return out


def onnx_run(fn, *inputs: torch.Tensor) -> np.ndarray:
    """Export ``fn`` as the harness exports a network (legacy exporter, opset 11, dynamic batch)
    and run it in ONNX Runtime."""

    class Wrapper(torch.nn.Module):
        def forward(self, *xs):
            return fn(*xs)

    names = [f"in{i}" for i in range(len(inputs))]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on constant folding
        torch.onnx.export(
            Wrapper(), inputs, buffer, dynamo=False, opset_version=11, input_names=names,
            output_names=["out"], dynamic_axes={n: {0: "batch"} for n in names + ["out"]},
        )
    model = onnx.load_from_string(buffer.getvalue())
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}, "custom ops in the graph"
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    return session.run(None, {n: x.numpy() for n, x in zip(names, inputs)})[0]


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(0)


def test_correlation_matches_its_definition_and_onnx(rng):
    # 23 columns: displacements reach past the edge on one side only for some pixels
    a = torch.randn(2, 5, 7, 23, generator=rng)
    b = torch.randn(2, 5, 7, 23, generator=rng)
    out = correlation(a, b)
    assert out.shape == (2, 441, 7, 23)
    expected = correlation_by_definition(a.double().numpy(), b.double().numpy())
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)
    # dy-major: channel 10*21 + 11 is dy 0, dx +2
    np.testing.assert_allclose(out[:, 221, :, :-2], (a[..., :-2] * b[..., 2:]).mean(1), atol=1e-6)
    np.testing.assert_allclose(onnx_run(correlation, a, b), out.numpy(), rtol=1e-5, atol=1e-6)


def test_resample2d_matches_the_kernel_grid_sample_and_onnx(rng):
    image = torch.randn(2, 3, 6, 9, generator=rng)
    # displacements up to 12 px leave the image on every side; integers hit corners exactly
    flow = torch.randn(2, 2, 6, 9, generator=rng) * 6
    flow[0, :, 0, :4] = torch.tensor([[1.0, -2.0, 0.0, 9.0], [0.0, 3.0, -1.0, 0.0]])
    out = resample2d(image, flow)
    kernel = resample_by_kernel(image.double().numpy(), flow.double().numpy())
    np.testing.assert_allclose(out.numpy(), kernel, rtol=1e-5, atol=1e-5)

    h, w = image.shape[2:]
    ys, xs = torch.meshgrid(torch.arange(h * 1.0), torch.arange(w * 1.0), indexing="ij")
    grid = torch.stack(
        (2 * (xs + flow[:, 0]) / (w - 1) - 1, 2 * (ys + flow[:, 1]) / (h - 1) - 1), dim=-1
    )
    sampled = F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
    np.testing.assert_allclose(out.numpy(), sampled.numpy(), rtol=1e-5, atol=1e-5)

    np.testing.assert_allclose(onnx_run(resample2d, image, flow), out.numpy(), rtol=1e-5, atol=1e-5)


def test_channel_norm_is_the_l2_norm_over_channels(rng):
    x = torch.randn(2, 3, 5, 4, generator=rng)
    expected = torch.linalg.vector_norm(x, dim=1, keepdim=True)
    np.testing.assert_allclose(channel_norm(x).numpy(), expected.numpy(), rtol=1e-6)
    np.testing.assert_allclose(onnx_run(channel_norm, x), expected.numpy(), rtol=1e-5)


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_upsample_by_4_matches_upstream_nn_upsample_and_onnx(rng, mode):
    x = torch.randn(2, 2, 3, 5, generator=rng)
    # upstream: nn.Upsample(scale_factor=4, mode=...), align_corners left at its default
    expected = torch.nn.Upsample(scale_factor=4, mode=mode)(x)
    out = upsample4(x, mode)
    assert out.shape == (2, 2, 12, 20)
    np.testing.assert_array_equal(out.numpy(), expected.numpy())
    exported = onnx_run(lambda t: upsample4(t, mode), x)
    np.testing.assert_allclose(exported, expected.numpy(), atol=1e-6)


def test_resample2d_indices_stay_in_the_image_at_bf16():
    # bf16 rounds 1023 to 1024: a bound clamped as a float let the last column index past the row
    w = 1024
    image = torch.arange(2 * w, dtype=torch.float32).reshape(1, 1, 2, w).to(torch.bfloat16)
    flow = torch.zeros(1, 2, 2, w, dtype=torch.bfloat16)
    flow[0, 0] = 7.0  # every pixel samples 7 columns to the right: the border for the last ones
    out = resample2d(image, flow)
    assert out.dtype == torch.bfloat16
    np.testing.assert_array_equal(out[0, 0, :, -1].float().numpy(), image[0, 0, :, -1].float().numpy())


def test_resample2d_nan_and_huge_flow_index_inside_the_image(rng):
    image = torch.randn(1, 2, 5, 7, generator=rng)
    flow = torch.zeros(1, 2, 5, 7)
    flow[0, 0, 0, 0] = float("nan")
    flow[0, 1, 1, 1] = 1e9
    flow[0, 0, 2, 2] = -1e9
    out = resample2d(image, flow)
    assert torch.isnan(out[0, :, 0, 0]).all()
    np.testing.assert_allclose(out[0, :, 1, 1].numpy(), image[0, :, -1, 1].numpy())  # bottom row
    np.testing.assert_allclose(out[0, :, 2, 2].numpy(), image[0, :, 2, 0].numpy())  # left column
    deployed = onnx_run(resample2d, image, flow)
    np.testing.assert_allclose(deployed[0, :, 1:], out.numpy()[0, :, 1:], rtol=1e-6, atol=1e-6)
