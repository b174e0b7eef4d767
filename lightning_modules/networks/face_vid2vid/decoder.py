"""Generator decoder: the warped feature volume, masked by the occlusion map, -> the output image (Wang et al. 2021)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.networks.face_vid2vid.blocks import ResBlock2d, SameBlock2d, UpBlock2d


class OcclusionAwareDecoder(nn.Module):
    """Volume (C x D) flattened to 2D channels -> residual blocks -> upsampling back to image size -> sigmoid."""

    def __init__(self, image_channels: int = 3, block_expansion: int = 64, num_down_blocks: int = 2,
                 feature_channels: int = 32, feature_depth: int = 16, num_resblocks: int = 6) -> None:
        super().__init__()
        width = block_expansion * 2**num_down_blocks
        self.third = SameBlock2d(feature_channels * feature_depth, width, kernel_size=3, leaky=True)
        self.fourth = nn.Conv2d(width, width, 1)
        self.resblocks_2d = nn.Sequential()
        for i in range(num_resblocks):
            self.resblocks_2d.add_module(f"2dr{i}", ResBlock2d(width))
        self.up_blocks = nn.ModuleList(
            UpBlock2d(max(block_expansion, block_expansion * 2 ** (num_down_blocks - i)),
                      max(block_expansion, block_expansion * 2 ** (num_down_blocks - i - 1)))
            for i in range(num_down_blocks))
        self.final = nn.Conv2d(block_expansion, image_channels, 7, padding=3)

    def forward(self, volume: torch.Tensor, occlusion: torch.Tensor | None) -> torch.Tensor:
        b, c, d, h, w = volume.shape
        out = self.fourth(self.third(volume.reshape(b, c * d, h, w)))
        if occlusion is not None:
            if occlusion.shape[2:] != out.shape[2:]:
                occlusion = F.interpolate(occlusion, size=out.shape[2:], mode="bilinear", align_corners=False)
            out = out * occlusion
        out = self.resblocks_2d(out)
        for block in self.up_blocks:
            out = block(out)
        return torch.sigmoid(self.final(out))
