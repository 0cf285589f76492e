"""3D MobileNetV2 of Efficient-3DCNNs (Köpüklü et al., 2019), checkpoint-compatible with upstream.

Module names follow okankop/Efficient-3DCNNs ``models/mobilenetv2.py`` so that the published
``ucf101_mobilenetv2_1.0x_RGB_16_best.pth`` loads strictly: ``features.<i>`` is a Sequential of
the stem, the inverted-residual blocks (each holding its layers in ``.conv``) and the last
1x1x1 convolution; ``classifier`` is ``Dropout, Linear``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.spec import Profile

WIDTH_MULT = 1.0  # the seed's checkpoint is the 1.0x model
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
# (expansion t, output channels c, repeats n, stride (T, H, W) of the first repeat)
BLOCKS = (
    (1, 16, 1, (1, 1, 1)),
    (6, 24, 2, (2, 2, 2)),
    (6, 32, 3, (2, 2, 2)),
    (6, 64, 4, (2, 2, 2)),
    (6, 96, 3, (1, 1, 1)),
    (6, 160, 3, (2, 2, 2)),
    (6, 320, 1, (1, 1, 1)),
)
SIZE_MULTIPLE = 16  # upstream asserts sample_size % 16 == 0
# One fixed calibration batch, so that the seeded weights are the same for every profile.
CALIBRATION_BATCH = (2, 3, 16, 64, 64)


def _conv_bn_relu6(cin: int, cout: int, kernel: int, stride, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv3d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm3d(cout),
        nn.ReLU6(inplace=True),
    ]


class InvertedResidual(nn.Module):
    """Pointwise expansion (skipped when t == 1), depthwise 3x3x3, linear pointwise projection."""

    def __init__(self, cin: int, cout: int, stride: tuple[int, int, int], expansion: int):
        super().__init__()
        hidden = round(cin * expansion)
        self.residual = stride == (1, 1, 1) and cin == cout
        layers = [] if expansion == 1 else _conv_bn_relu6(cin, hidden, 1, 1)
        layers += _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden)
        layers += [nn.Conv3d(hidden, cout, 1, 1, 0, bias=False), nn.BatchNorm3d(cout)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2_3D(nn.Module):
    def __init__(self, num_classes: int, width_mult: float = WIDTH_MULT):
        super().__init__()
        channels = int(STEM_CHANNELS * width_mult)
        # upstream widens the last layer only for width_mult > 1
        last = int(LAST_CHANNELS * width_mult) if width_mult > 1.0 else LAST_CHANNELS
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn_relu6(3, channels, 3, (1, 2, 2)))]
        for expansion, c, repeats, stride in BLOCKS:
            cout = int(c * width_mult)
            for i in range(repeats):
                layers.append(InvertedResidual(channels, cout, stride if i == 0 else (1, 1, 1), expansion))
                channels = cout
        layers.append(nn.Sequential(*_conv_bn_relu6(channels, last, 1, 1)))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.features(image)
        # Upstream pools with a kernel equal to the whole feature map; traced, that kernel is a
        # constant, so the graph holds an AveragePool as the seed's export of upstream's code does.
        x = F.avg_pool3d(x, tuple(int(s) for s in x.shape[-3:]))
        return self.classifier(x.flatten(1))


def build(profile: Profile, state_dict: dict | None = None) -> MobileNetV2_3D:
    """The network for ``profile`` (eval mode); there is one variant, so ``state_dict`` only says
    whether the seeded stand-in weights need their BatchNorm statistics calibrated."""
    channels, _, height, width = profile.inputs["image"]
    if channels != 3 or height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
        raise ValueError(
            f"input {profile.inputs['image']}: expected (3, T, H, W) with H and W multiples of "
            f"{SIZE_MULTIPLE}"
        )
    net = MobileNetV2_3D(profile.outputs["class"][0])
    _init_weights(net)
    if state_dict is None:
        _calibrate_batchnorm(net)
    return net.eval()


def _init_weights(net: nn.Module) -> None:
    """He (fan-in) convolutions, unit BatchNorm, a small classifier: a seeded stand-in network.

    Upstream scales convolutions by fan-out, which for a depthwise layer (fan-in 27, fan-out
    27 * channels) shrinks the signal ~sqrt(channels)-fold, down to BatchNorm's eps, where
    calibrated statistics can no longer restore it. Fan-in keeps every layer's output variance
    near its input's.
    """
    for m in net.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def _calibrate_batchnorm(net: nn.Module) -> None:
    """Set every BatchNorm's running statistics to those of one seeded batch of pixel-like noise.

    Identity running statistics would pass the 0..255 input scale through every layer; the
    calibrated ones normalise activations to unit scale, as a trained network's do.
    """
    batchnorms = [m for m in net.modules() if isinstance(m, nn.BatchNorm3d)]
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: after one batch, exactly its statistics
    generator = torch.Generator().manual_seed(0)
    clips = torch.randn(CALIBRATION_BATCH, generator=generator) * 60.0  # mean-subtracted 0..255
    net.train()
    with torch.no_grad():
        net(clips)
    for bn in batchnorms:
        bn.momentum = 0.1
    net.eval()
