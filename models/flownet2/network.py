"""FlowNet2 (NVIDIA/flownet2-pytorch@2e9e010c) with export-friendly custom layers.

Module and parameter names follow upstream's ``models.FlowNet2`` exactly, so its
``FlowNet2_checkpoint.pth.tar`` (220 tensors, 162,518,834 parameters) loads strictly.

Upstream's three CUDA extensions are written here with standard operators that the legacy
ONNX exporter maps at opset 11 (``grid_sample`` needs opset 16, custom ops are not wanted):

* Correlation (pad 20, kernel 1, max displacement 20, stride2 2): 441 shifted products,
  each averaged over channels, exactly as the kernel's ``sum / (kernel_size**2 * C)``.
* Resample2d (bilinear warp of image 2 towards image 1 by a flow): corner gathers with
  clamped integer coordinates, as the kernel does.
* ChannelNorm: L2 norm over channels.

As in the Ascend port, the input normalisation (subtract the per-channel mean over both
frames, divide by ``rgb_max`` 255) happens outside the graph; the network takes the two
normalised frames ``x1``, ``x2`` [B, 3, H, W] (H, W multiples of 64) and returns the flow
[B, 2, H, W] in pixels.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from harness.spec import Profile

DIV_FLOW = 20.0  # networks predict flow / 20
CORR_MAX_DISPLACEMENT = 20
CORR_STRIDE2 = 2


def conv(in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    # a Sequential so that the weights are named '<name>.0.weight' as upstream's
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, kernel_size, stride, (kernel_size - 1) // 2, bias=True),
        nn.LeakyReLU(0.1),
    )


def i_conv(in_planes: int, out_planes: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 3, 1, 1, bias=True))


def predict_flow(in_planes: int) -> nn.Conv2d:
    return nn.Conv2d(in_planes, 2, kernel_size=3, stride=1, padding=1, bias=True)


def deconv(in_planes: int, out_planes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(in_planes, out_planes, kernel_size=4, stride=2, padding=1, bias=True),
        nn.LeakyReLU(0.1),
    )


def upsample_flow(bias: bool) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(2, 2, 4, 2, 1, bias=bias)


def correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """FlowNetC's cost volume: [B, 441, H, W], channel (dy, dx) dy-major, dy, dx in -20..20 step 2.

    out[:, i*21 + j, y, x] = mean_c a[:, c, y, x] * b[:, c, y + dy_i, x + dx_j], zero outside b.
    """
    d = CORR_MAX_DISPLACEMENT
    padded = F.pad(b, (d, d, d, d))
    # slice ends counted from the far edge keep the graph free of Shape ops
    shifts = range(0, 2 * d + 1, CORR_STRIDE2)
    planes = []
    for dy in shifts:
        rows = padded[:, :, dy : dy - 2 * d if dy < 2 * d else None]
        for dx in shifts:
            window = rows[:, :, :, dx : dx - 2 * d if dx < 2 * d else None]
            planes.append((a * window).mean(dim=1, keepdim=True))
    return torch.cat(planes, dim=1)


def _clamp_index(index: torch.Tensor, high: int) -> torch.Tensor:
    """An int64 index clamped to 0..high with comparisons, which ONNX defines on integers at
    opset 11 (Clip, Min and Max take integers only from opset 12)."""
    index = torch.where(index < 0, torch.zeros_like(index), index)
    return torch.where(index > high, torch.full_like(index, high), index)


def resample2d(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Bilinear sample of ``image`` [B, C, H, W] at (x + u, y + v); ``flow`` [B, 2, H, W] = (u, v).

    Upstream's kernel clamps each corner's integer coordinate into the image and keeps the
    fractional weights, which equals border padding (grid_sample, align_corners=True).

    The corner indices are computed and clamped as integers: the pixel grid as an int64 ramp
    plus ``floor(flow)``. Done in floating point, a runtime that lowers the graph to bf16
    (8 significant bits) rounds ``x + u`` and the bound ``w - 1`` (1023 -> 1024) so that a
    clamped index lands past the row, and a NaN flow casts to an arbitrary integer; both made
    GatherElements read out of bounds (OpenVINO bf16 on 448x1024 Sintel). Clamping after the
    cast keeps every index inside the image at any precision. The fractional weights are taken
    from the flow alone, so they keep the flow's own precision instead of that of ``x + u``.
    """
    b, c, h, w = image.shape
    u, v = flow[:, 0], flow[:, 1]
    floor_u, floor_v = torch.floor(u), torch.floor(v)
    alpha, beta = u - floor_u, v - floor_v
    x0 = torch.arange(w, dtype=torch.int64, device=flow.device).view(1, 1, w) + floor_u.long()
    y0 = torch.arange(h, dtype=torch.int64, device=flow.device).view(1, h, 1) + floor_v.long()
    left, right = _clamp_index(x0, w - 1), _clamp_index(x0 + 1, w - 1)
    top, bottom = _clamp_index(y0, h - 1), _clamp_index(y0 + 1, h - 1)
    flat = image.reshape(b, c, h * w)

    def corner(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        index = (row * w + col).reshape(b, 1, h * w).expand(b, c, h * w)
        return torch.gather(flat, 2, index).reshape(b, c, h, w)

    alpha, beta = alpha.unsqueeze(1), beta.unsqueeze(1)
    return (
        (1 - alpha) * (1 - beta) * corner(top, left)
        + alpha * (1 - beta) * corner(top, right)
        + (1 - alpha) * beta * corner(bottom, left)
        + alpha * beta * corner(bottom, right)
    )


def channel_norm(x: torch.Tensor) -> torch.Tensor:
    return (x * x).sum(dim=1, keepdim=True).sqrt()


def upsample4(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Upstream's nn.Upsample(scale_factor=4); bilinear means align_corners=False there."""
    if mode == "bilinear":
        return F.interpolate(x, scale_factor=4.0, mode="bilinear", align_corners=False)
    return F.interpolate(x, scale_factor=4.0, mode="nearest")


class _Decoder(nn.Module):
    """The refinement stages shared by FlowNetC and FlowNetS (upstream repeats them inline)."""

    def decode(self, conv6, conv5, conv4, conv3, conv2) -> torch.Tensor:
        flow6 = self.predict_flow6(conv6)
        concat5 = torch.cat((conv5, self.deconv5(conv6), self.upsampled_flow6_to_5(flow6)), 1)
        flow5 = self.predict_flow5(concat5)
        concat4 = torch.cat((conv4, self.deconv4(concat5), self.upsampled_flow5_to_4(flow5)), 1)
        flow4 = self.predict_flow4(concat4)
        concat3 = torch.cat((conv3, self.deconv3(concat4), self.upsampled_flow4_to_3(flow4)), 1)
        flow3 = self.predict_flow3(concat3)
        concat2 = torch.cat((conv2, self.deconv2(concat3), self.upsampled_flow3_to_2(flow3)), 1)
        return self.predict_flow2(concat2)

    def _decoder_layers(self, flow_up_bias: bool) -> None:
        self.deconv5 = deconv(1024, 512)
        self.deconv4 = deconv(1026, 256)
        self.deconv3 = deconv(770, 128)
        self.deconv2 = deconv(386, 64)
        self.predict_flow6 = predict_flow(1024)
        self.predict_flow5 = predict_flow(1026)
        self.predict_flow4 = predict_flow(770)
        self.predict_flow3 = predict_flow(386)
        self.predict_flow2 = predict_flow(194)
        self.upsampled_flow6_to_5 = upsample_flow(flow_up_bias)
        self.upsampled_flow5_to_4 = upsample_flow(flow_up_bias)
        self.upsampled_flow4_to_3 = upsample_flow(flow_up_bias)
        self.upsampled_flow3_to_2 = upsample_flow(flow_up_bias)


class FlowNetC(_Decoder):
    def __init__(self):
        super().__init__()
        self.conv1 = conv(3, 64, kernel_size=7, stride=2)
        self.conv2 = conv(64, 128, kernel_size=5, stride=2)
        self.conv3 = conv(128, 256, kernel_size=5, stride=2)
        self.conv_redir = conv(256, 32, kernel_size=1)
        self.conv3_1 = conv(473, 256)
        self.conv4 = conv(256, 512, stride=2)
        self.conv4_1 = conv(512, 512)
        self.conv5 = conv(512, 512, stride=2)
        self.conv5_1 = conv(512, 512)
        self.conv6 = conv(512, 1024, stride=2)
        self.conv6_1 = conv(1024, 1024)
        self._decoder_layers(flow_up_bias=True)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        conv2a = self.conv2(self.conv1(x1))
        conv3a = self.conv3(conv2a)
        conv3b = self.conv3(self.conv2(self.conv1(x2)))
        corr = F.leaky_relu(correlation(conv3a, conv3b), 0.1)
        conv3_1 = self.conv3_1(torch.cat((self.conv_redir(conv3a), corr), 1))
        conv4 = self.conv4_1(self.conv4(conv3_1))
        conv5 = self.conv5_1(self.conv5(conv4))
        conv6 = self.conv6_1(self.conv6(conv5))
        return self.decode(conv6, conv5, conv4, conv3_1, conv2a)


class FlowNetS(_Decoder):
    def __init__(self, input_channels: int = 12):
        super().__init__()
        self.conv1 = conv(input_channels, 64, kernel_size=7, stride=2)
        self.conv2 = conv(64, 128, kernel_size=5, stride=2)
        self.conv3 = conv(128, 256, kernel_size=5, stride=2)
        self.conv3_1 = conv(256, 256)
        self.conv4 = conv(256, 512, stride=2)
        self.conv4_1 = conv(512, 512)
        self.conv5 = conv(512, 512, stride=2)
        self.conv5_1 = conv(512, 512)
        self.conv6 = conv(512, 1024, stride=2)
        self.conv6_1 = conv(1024, 1024)
        self._decoder_layers(flow_up_bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv2 = self.conv2(self.conv1(x))
        conv3 = self.conv3_1(self.conv3(conv2))
        conv4 = self.conv4_1(self.conv4(conv3))
        conv5 = self.conv5_1(self.conv5(conv4))
        conv6 = self.conv6_1(self.conv6(conv5))
        return self.decode(conv6, conv5, conv4, conv3, conv2)


class FlowNetSD(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv0 = conv(6, 64)
        self.conv1 = conv(64, 64, stride=2)
        self.conv1_1 = conv(64, 128)
        self.conv2 = conv(128, 128, stride=2)
        self.conv2_1 = conv(128, 128)
        self.conv3 = conv(128, 256, stride=2)
        self.conv3_1 = conv(256, 256)
        self.conv4 = conv(256, 512, stride=2)
        self.conv4_1 = conv(512, 512)
        self.conv5 = conv(512, 512, stride=2)
        self.conv5_1 = conv(512, 512)
        self.conv6 = conv(512, 1024, stride=2)
        self.conv6_1 = conv(1024, 1024)
        self.deconv5 = deconv(1024, 512)
        self.deconv4 = deconv(1026, 256)
        self.deconv3 = deconv(770, 128)
        self.deconv2 = deconv(386, 64)
        self.inter_conv5 = i_conv(1026, 512)
        self.inter_conv4 = i_conv(770, 256)
        self.inter_conv3 = i_conv(386, 128)
        self.inter_conv2 = i_conv(194, 64)
        self.predict_flow6 = predict_flow(1024)
        self.predict_flow5 = predict_flow(512)
        self.predict_flow4 = predict_flow(256)
        self.predict_flow3 = predict_flow(128)
        self.predict_flow2 = predict_flow(64)
        self.upsampled_flow6_to_5 = upsample_flow(True)
        self.upsampled_flow5_to_4 = upsample_flow(True)
        self.upsampled_flow4_to_3 = upsample_flow(True)
        self.upsampled_flow3_to_2 = upsample_flow(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv1 = self.conv1_1(self.conv1(self.conv0(x)))
        conv2 = self.conv2_1(self.conv2(conv1))
        conv3 = self.conv3_1(self.conv3(conv2))
        conv4 = self.conv4_1(self.conv4(conv3))
        conv5 = self.conv5_1(self.conv5(conv4))
        conv6 = self.conv6_1(self.conv6(conv5))
        flow6 = self.predict_flow6(conv6)
        concat5 = torch.cat((conv5, self.deconv5(conv6), self.upsampled_flow6_to_5(flow6)), 1)
        flow5 = self.predict_flow5(self.inter_conv5(concat5))
        concat4 = torch.cat((conv4, self.deconv4(concat5), self.upsampled_flow5_to_4(flow5)), 1)
        flow4 = self.predict_flow4(self.inter_conv4(concat4))
        concat3 = torch.cat((conv3, self.deconv3(concat4), self.upsampled_flow4_to_3(flow4)), 1)
        flow3 = self.predict_flow3(self.inter_conv3(concat3))
        concat2 = torch.cat((conv2, self.deconv2(concat3), self.upsampled_flow3_to_2(flow3)), 1)
        return self.predict_flow2(self.inter_conv2(concat2))


class FlowNetFusion(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv0 = conv(11, 64)
        self.conv1 = conv(64, 64, stride=2)
        self.conv1_1 = conv(64, 128)
        self.conv2 = conv(128, 128, stride=2)
        self.conv2_1 = conv(128, 128)
        self.deconv1 = deconv(128, 32)
        self.deconv0 = deconv(162, 16)
        self.inter_conv1 = i_conv(162, 32)
        self.inter_conv0 = i_conv(82, 16)
        self.predict_flow2 = predict_flow(128)
        self.predict_flow1 = predict_flow(32)
        self.predict_flow0 = predict_flow(16)
        self.upsampled_flow2_to_1 = upsample_flow(True)
        self.upsampled_flow1_to_0 = upsample_flow(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv0 = self.conv0(x)
        conv1 = self.conv1_1(self.conv1(conv0))
        conv2 = self.conv2_1(self.conv2(conv1))
        flow2 = self.predict_flow2(conv2)
        concat1 = torch.cat((conv1, self.deconv1(conv2), self.upsampled_flow2_to_1(flow2)), 1)
        flow1 = self.predict_flow1(self.inter_conv1(concat1))
        concat0 = torch.cat((conv0, self.deconv0(concat1), self.upsampled_flow1_to_0(flow1)), 1)
        return self.predict_flow0(self.inter_conv0(concat0))


class FlowNet2(nn.Module):
    def __init__(self):
        super().__init__()
        self.flownetc = FlowNetC()
        self.flownets_1 = FlowNetS()
        self.flownets_2 = FlowNetS()
        self.flownets_d = FlowNetSD()
        self.flownetfusion = FlowNetFusion()
        # upstream's initialisation, so that an unloaded network gives non-degenerate flow
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                if m.bias is not None:
                    nn.init.uniform_(m.bias)
                nn.init.xavier_uniform_(m.weight)

    @staticmethod
    def _refinement_input(x, x1, x2, flow: torch.Tensor) -> torch.Tensor:
        """Upstream's 12-channel input of a FlowNetS: frames, warped frame 2, flow / 20, error."""
        warped = resample2d(x2, flow)
        error = channel_norm(x1 - warped)
        return torch.cat((x, warped, flow / DIV_FLOW, error), dim=1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x = torch.cat((x1, x2), dim=1)

        flow_c = upsample4(self.flownetc(x1, x2) * DIV_FLOW, "bilinear")
        flow_s1 = self.flownets_1(self._refinement_input(x, x1, x2, flow_c))
        flow_s1 = upsample4(flow_s1 * DIV_FLOW, "bilinear")
        flow_s2 = self.flownets_2(self._refinement_input(x, x1, x2, flow_s1))
        flow_s2 = upsample4(flow_s2 * DIV_FLOW, "nearest")
        # upstream divides FlowNetSD's output by div_flow (not multiplies); the released
        # weights were evaluated that way, so it is kept
        flow_sd = upsample4(self.flownets_d(x) / DIV_FLOW, "nearest")

        error_s2 = channel_norm(x1 - resample2d(x2, flow_s2))
        error_sd = channel_norm(x1 - resample2d(x2, flow_sd))
        norm_sd, norm_s2 = channel_norm(flow_sd), channel_norm(flow_s2)
        fusion_in = (x1, flow_sd, flow_s2, norm_sd, norm_s2, error_sd, error_s2)
        return self.flownetfusion(torch.cat(fusion_in, dim=1))


def build(profile: Profile, state_dict: dict | None = None) -> nn.Module:
    """FlowNet2 in eval mode; one variant only, so ``state_dict`` chooses nothing."""
    height, width = profile.inputs["x1"][1:]
    if height % 64 or width % 64:
        raise ValueError(
            f"FlowNet2 needs input sides that are multiples of 64, got {height}x{width}"
        )
    return FlowNet2().eval()


def identify_foreign(keys) -> str | None:
    """Name the upstream sibling network a state_dict belongs to, if it is one of them."""
    keys = set(keys)
    if "flownetc.conv1.0.weight" in keys and "flownetfusion.conv0.0.weight" not in keys:
        if "flownets_2.conv1.0.weight" in keys:
            return "FlowNet2-CSS (upstream models.FlowNet2CSS)"
        if "flownets_1.conv1.0.weight" in keys:
            return "FlowNet2-CS (upstream models.FlowNet2CS)"
    if "conv_redir.0.weight" in keys:
        return "FlowNet2-C (upstream models.FlowNet2C)"
    if "inter_conv5.0.weight" in keys and "conv6_1.0.weight" in keys:
        return "FlowNet2-SD (upstream models.FlowNet2SD)"
    if "conv3_1.0.weight" in keys and "predict_flow6.weight" in keys:
        return "FlowNet2-S (upstream models.FlowNet2S)"
    return None
