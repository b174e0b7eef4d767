"""Multi-scale patch discriminator (pix2pix-style, Isola et al. 2017; one per image-pyramid scale, as face-vid2vid)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


class PatchDownBlock(nn.Module):
    """4x4 conv (spectrally normalised when asked) -> instance norm (not on the first block) -> leaky ReLU -> pool."""

    def __init__(self, cin: int, cout: int, norm: bool, pool: bool, sn: bool) -> None:
        super().__init__()
        conv = nn.Conv2d(cin, cout, 4)
        self.conv = spectral_norm(conv) if sn else conv
        self.norm = nn.InstanceNorm2d(cout, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        out = F.leaky_relu(out, 0.2)
        return F.avg_pool2d(out, 2) if self.pool else out


class PatchDiscriminator(nn.Module):
    def __init__(self, image_channels: int = 3, block_expansion: int = 32, num_blocks: int = 4,
                 max_features: int = 512, sn: bool = True) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            PatchDownBlock(image_channels if i == 0 else min(max_features, block_expansion * 2**i),
                           min(max_features, block_expansion * 2 ** (i + 1)), norm=i != 0,
                           pool=i != num_blocks - 1, sn=sn)
            for i in range(num_blocks))
        conv = nn.Conv2d(min(max_features, block_expansion * 2**num_blocks), 1, 1)
        self.conv = spectral_norm(conv) if sn else conv

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        features = []
        for block in self.down_blocks:
            x = block(x)
            features.append(x)
        return features, self.conv(x)


def scale_key(scale: float) -> str:
    """ModuleDict key of a pyramid scale: 0.5 -> "0-5" (module names cannot hold dots)."""
    return str(scale).replace(".", "-")


class MultiScaleDiscriminator(nn.Module):
    """One patch discriminator per scale; forward takes {scale: image} and gives {scale: (feature maps, logits)}."""

    def __init__(self, scales: tuple[float, ...] = (1,), **kwargs) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.discs = nn.ModuleDict({scale_key(s): PatchDiscriminator(**kwargs) for s in self.scales})

    def forward(self, pyramid: dict[float, torch.Tensor]) -> dict[float, tuple[list[torch.Tensor], torch.Tensor]]:
        return {s: self.discs[scale_key(s)](pyramid[s]) for s in self.scales}
