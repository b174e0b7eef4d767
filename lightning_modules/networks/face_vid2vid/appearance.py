"""Appearance feature extractor: source image -> 3D feature volume C x D x H/4 x W/4 (Wang et al. 2021, Fig. 3)."""

from __future__ import annotations

import torch
from torch import nn

from lightning_modules.networks.face_vid2vid.blocks import DownBlock2d, ResBlock3d, SameBlock2d, channels


class AppearanceFeatureExtractor(nn.Module):
    """2D encoder whose last 1x1 conv is reshaped into `feature_channels` x `feature_depth` volume channels."""

    def __init__(self, image_channels: int = 3, block_expansion: int = 64, num_down_blocks: int = 2,
                 feature_channels: int = 32, feature_depth: int = 16, num_resblocks: int = 6) -> None:
        super().__init__()
        self.feature_channels, self.feature_depth = feature_channels, feature_depth
        cap = feature_channels * feature_depth
        self.first = SameBlock2d(image_channels, block_expansion, kernel_size=7)
        self.down_blocks = nn.ModuleList(
            DownBlock2d(channels(block_expansion, i, cap), channels(block_expansion, i + 1, cap))
            for i in range(num_down_blocks))
        self.second = nn.Conv2d(channels(block_expansion, num_down_blocks, cap), cap, 1)
        self.resblocks_3d = nn.Sequential()
        for i in range(num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(feature_channels))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.first(image)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)
        b, _, h, w = out.shape
        return self.resblocks_3d(out.view(b, self.feature_channels, self.feature_depth, h, w))
