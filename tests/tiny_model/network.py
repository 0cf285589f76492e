"""A one-block 3D CNN: Conv3d -> BatchNorm3d -> ReLU -> global average -> Linear.

Module names are the upstream-style ``features.<i>`` and ``classifier`` so that a checkpoint
saved from the same module tree loads strictly.
"""
from __future__ import annotations

import torch
from torch import nn

from harness.spec import Profile

NUM_CLASSES = 5  # fixed by the network, not read from the spec: the declared output is checked against it
CHANNELS = 8


class TinyC3D(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.features = nn.Sequential(nn.Conv3d(3, CHANNELS, 3, padding=1), nn.BatchNorm3d(CHANNELS), nn.ReLU())
        self.classifier = nn.Linear(CHANNELS, num_classes)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(clip).mean(dim=(2, 3, 4)))


def build(profile: Profile, state_dict: dict | None = None) -> TinyC3D:
    return TinyC3D()
