"""Canonical keypoint detector: K identity-specific 3D keypoints from an image (Wang et al. 2021, Sec. 3.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.networks.face_vid2vid.blocks import (AntiAliasDownsample, DownBlock2d, UpBlock3d, channels,
                                                            coordinate_grid_3d)


class KeypointHourglass(nn.Module):
    """2D encoder -> 1x1 conv reshaped into a thin volume -> 3D decoder that grows height and width back."""

    def __init__(self, image_channels: int, block_expansion: int, num_blocks: int, max_features: int,
                 volume_depth: int) -> None:
        super().__init__()
        self.volume_depth = volume_depth
        self.down_blocks = nn.Sequential()
        for i in range(num_blocks):
            self.down_blocks.add_module(f"down{i}", DownBlock2d(
                image_channels if i == 0 else channels(block_expansion, i, max_features),
                channels(block_expansion, i + 1, max_features)))
        bottom = channels(block_expansion, num_blocks, max_features)
        self.conv = nn.Conv2d(bottom, bottom * volume_depth, 1)
        self.up_blocks = nn.Sequential()
        for i in range(num_blocks):
            self.up_blocks.add_module(f"up{i}", UpBlock3d(channels(block_expansion, num_blocks - i, max_features),
                                                          channels(block_expansion, num_blocks - i - 1, max_features)))
        self.out_channels = channels(block_expansion, 0, max_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(self.down_blocks(x))
        b, c, h, w = out.shape
        return self.up_blocks(out.view(b, c // self.volume_depth, self.volume_depth, h, w))


class CanonicalKeypointDetector(nn.Module):
    """Keypoints as the softmax-weighted mean position (soft-argmax) of K heatmaps over a (D, H, W) volume."""

    def __init__(self, image_channels: int = 3, num_kp: int = 15, block_expansion: int = 32, num_blocks: int = 5,
                 max_features: int = 1024, volume_depth: int = 16, temperature: float = 0.1,
                 scale_factor: float = 0.25) -> None:
        super().__init__()
        self.predictor = KeypointHourglass(image_channels, block_expansion, num_blocks, max_features, volume_depth)
        self.kp = nn.Conv3d(self.predictor.out_channels, num_kp, 3, padding=1)
        self.temperature = temperature
        self.scale_factor = scale_factor
        if scale_factor != 1:
            self.down = AntiAliasDownsample(image_channels, scale_factor)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, K, 3) keypoints, (x, y, z) in [-1, 1]."""
        x = self.down(image) if self.scale_factor != 1 else image
        logits = self.kp(self.predictor(x))
        b, k, d, h, w = logits.shape
        heatmap = F.softmax(logits.view(b, k, -1).float() / self.temperature, dim=2).view(b, k, d, h, w)
        grid = coordinate_grid_3d(d, h, w, like=heatmap)
        return (heatmap[..., None] * grid).sum(dim=(2, 3, 4)).to(image.dtype)
