"""FLAVR (tarun005/FLAVR@d23f17cd): ``UNet_3D_3D('unet_18', n_inputs=4, joinType='concat',
upmode='transpose')`` with batchnorm off, rewritten module by module so that the state_dict keys
and shapes are upstream's (a DataParallel checkpoint loads strictly once 'module.' is stripped).

Upstream switches the bias of the encoder's 3x3x3 convs (and its stem) with a module global that
is on when ``n_outputs > 1``: the 2x model (one output) has none, the 4x and 8x models have them.
:func:`build` reads both that and ``n_outputs`` from the checkpoint it is given.

The reflection padding before the last 7x7 conv is written as the Ascend port does it
(``fix.patch``: slices, flips and concats), because ATC had no reflect-mode Pad; the values are
those of ``nn.ReflectionPad2d``.
"""
from __future__ import annotations

import torch
from torch import nn

from harness.spec import CheckpointError, Profile

STAGES = ((64, 1), (128, 2), (256, 2), (512, 1))  # encoder (planes, spatial stride) per layer
BLOCKS_PER_STAGE = 2  # resnet-18 layout
DECODER_WIDTHS = (512, 256, 128, 64)  # upstream's nf


class SEGating(nn.Module):
    """Feature gating: x * sigmoid(conv1x1(global average of x))."""

    def __init__(self, channels: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.attn_layer = nn.Sequential(nn.Conv3d(channels, channels, kernel_size=1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attn_layer(self.pool(x))


class BasicBlock(nn.Module):
    """3D resnet block; ``conv1``/``conv2`` are Sequentials because upstream's hold a batchnorm
    slot (an identity here) and a ReLU, which fixes the '.0.' in their keys."""

    def __init__(self, inplanes: int, planes: int, stride: tuple[int, int, int], bias: bool):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv3d(inplanes, planes, 3, stride=stride, padding=1, bias=bias),
            nn.Identity(),
            nn.ReLU(),
        )
        self.conv2 = nn.Sequential(nn.Conv3d(planes, planes, 3, padding=1, bias=bias), nn.Identity())
        self.fg = SEGating(planes)
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != (1, 1, 1) or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv3d(inplanes, planes, 1, stride=stride, bias=False), nn.Identity()
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(self.fg(self.conv2(self.conv1(x))) + residual)


class Encoder(nn.Module):
    """R3D-18 without batchnorm; returns the stem's and every stage's features for the skips."""

    def __init__(self, bias: bool):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=bias),
            nn.Identity(),
            nn.ReLU(),
        )
        inplanes = 64
        for index, (planes, spatial) in enumerate(STAGES, start=1):
            stride = (1, spatial, spatial)
            blocks = [BasicBlock(inplanes, planes, stride, bias)]
            blocks += [BasicBlock(planes, planes, (1, 1, 1), bias) for _ in range(BLOCKS_PER_STAGE - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
            inplanes = planes
        self._init_like_upstream()

    def _init_like_upstream(self) -> None:
        # torchvision's VideoResNet init, which upstream keeps for the encoder only
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x0 = self.stem(x)
        x1 = self.layer1(x0)
        x2 = self.layer2(x1)
        x3 = self.layer3(x2)
        x4 = self.layer4(x3)
        return x0, x1, x2, x3, x4


class Conv3dGated(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv3d(in_ch, out_ch, 3, padding=1), SEGating(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UpConv3dGated(nn.Module):
    """Transposed conv doubling H and W (upmode='transpose'), then gating."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.upconv = nn.Sequential(
            nn.ConvTranspose3d(in_ch, out_ch, (3, 4, 4), stride=(1, 2, 2), padding=(1, 1, 1)),
            SEGating(out_ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upconv(x)


class Conv2dPlain(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ReflectionPad2dSliced(nn.Module):
    """``nn.ReflectionPad2d(pad)`` built from Slice/Flip/Concat, as the Ascend port exports it."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.pad
        x = torch.cat((x[:, :, 1:d + 1].flip(2), x, x[:, :, -d - 1:-1].flip(2)), dim=2)
        return torch.cat((x[:, :, :, 1:d + 1].flip(3), x, x[:, :, :, -d - 1:-1].flip(3)), dim=3)


class FLAVR(nn.Module):
    """Takes ``n_inputs`` RGB frames [B,3,H,W] in [0,1] (H, W multiples of 8) and returns
    ``n_outputs`` frames at t = k/(n_outputs+1) between the two middle inputs."""

    def __init__(self, n_inputs: int = 4, n_outputs: int = 3, encoder_bias: bool = True):
        super().__init__()
        self.n_inputs = n_inputs
        self.n_outputs = n_outputs
        self.variant = f"{n_outputs + 1}x"
        nf = DECODER_WIDTHS
        self.lrelu = nn.LeakyReLU(0.2)
        self.encoder = Encoder(encoder_bias)
        # joinType='concat' doubles each skip-joined width
        self.decoder = nn.Sequential(
            Conv3dGated(nf[0], nf[1]),
            UpConv3dGated(nf[1] * 2, nf[2]),
            UpConv3dGated(nf[2] * 2, nf[3]),
            Conv3dGated(nf[3] * 2, nf[3]),
            UpConv3dGated(nf[3] * 2, nf[3]),
        )
        self.feature_fuse = Conv2dPlain(nf[3] * n_inputs, nf[3])
        self.outconv = nn.Sequential(
            ReflectionPad2dSliced(3), nn.Conv2d(nf[3], 3 * n_outputs, kernel_size=7)
        )

    def forward(self, *frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        images = torch.stack(frames, dim=2)  # [B, 3, T, H, W]
        # per-sample, per-channel mean over time and space (upstream, after CAIN)
        mean = images.mean(2, keepdim=True).mean(3, keepdim=True).mean(4, keepdim=True)
        x0, x1, x2, x3, x4 = self.encoder(images - mean)

        d = torch.cat((self.lrelu(self.decoder[0](x4)), x3), dim=1)
        d = torch.cat((self.lrelu(self.decoder[1](d)), x2), dim=1)
        d = torch.cat((self.lrelu(self.decoder[2](d)), x1), dim=1)
        d = torch.cat((self.lrelu(self.decoder[3](d)), x0), dim=1)
        d = self.lrelu(self.decoder[4](d))
        d = torch.cat(torch.unbind(d, 2), dim=1)  # time folded into channels, frame-major

        out = self.outconv(self.lrelu(self.feature_fuse(d)))
        mean = mean.squeeze(2)
        return tuple(o + mean for o in torch.split(out, 3, dim=1))


def build(profile: Profile, state_dict: dict | None = None) -> FLAVR:
    """The network for ``profile``. A checkpoint of another variant (2x: one output and no
    encoder biases; 8x: seven outputs) is named as such, since this spec's ONNX contract has
    one output per profile output."""
    n_inputs = len(profile.inputs)
    n_outputs = len(profile.outputs)
    encoder_bias = n_outputs > 1  # upstream's rule: the 2x model has no encoder biases
    if state_dict is not None:
        out_weight = state_dict.get("outconv.1.weight")
        held = out_weight.shape[0] // 3 if out_weight is not None else n_outputs
        if held != n_outputs:
            raise CheckpointError(
                f"the checkpoint holds FLAVR {held + 1}x ({held} interpolated frame(s), encoder biases "
                f"{'on' if 'encoder.stem.0.bias' in state_dict else 'off'}); this spec is FLAVR "
                f"{n_outputs + 1}x with outputs {', '.join(profile.outputs)}")
        encoder_bias = "encoder.stem.0.bias" in state_dict
    return FLAVR(n_inputs, n_outputs, encoder_bias).eval()
