"""A small CNN that reads the emotion of one face crop: (B, 3, S, S) RGB in [0, 1] -> (B, 8) MEAD emotion logits."""

from __future__ import annotations

import torch
from torch import nn

from dtl_foundation.mead import NUM_EMOTIONS


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(True))


class FrameEmotionCNN(nn.Module):
    """A strided stem, then `blocks` stages (3x3 conv + 2x2 max pool, channels doubling from `width`), global
    average pooling, dropout, a linear head. Cheap enough to train on CPU at 64 px."""

    def __init__(self, width: int = 16, blocks: int = 4, dropout: float = 0.2, num_classes: int = NUM_EMOTIONS) -> None:
        super().__init__()
        layers, channels = [conv_bn_relu(3, width, stride=2)], width
        for k in range(blocks):
            out = width * 2 ** (k + 1) if k < blocks - 1 else width * 2**k * 2
            layers += [conv_bn_relu(channels, out), nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(channels, num_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (B, 3, S, S) face crops, got {tuple(images.shape)}")
        return self.head(self.features((images - 0.5) / 0.25).mean(dim=(2, 3)))
