"""Convolution blocks shared by the face-vid2vid networks (2D image encoders, 3D feature-volume hourglasses)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def channels(expansion: int, level: int, cap: int) -> int:
    """Width of encoder level `level`: expansion x 2^level, capped."""
    return min(cap, expansion * 2**level)


class SameBlock2d(nn.Module):
    """conv -> batch norm -> ReLU (or leaky ReLU), resolution kept."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, leaky: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2)
        self.norm = nn.BatchNorm2d(cout)
        self.leaky = leaky

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return F.leaky_relu(x, 0.01) if self.leaky else F.relu(x)


class DownBlock2d(nn.Module):
    """conv -> batch norm -> ReLU -> 2x average pooling."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


class UpBlock2d(nn.Module):
    """2x nearest upsampling -> conv -> batch norm -> ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=2.0))))


class DownBlock3d(nn.Module):
    """3D conv -> batch norm -> ReLU -> average pooling of height and width (depth kept)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(F.relu(self.norm(self.conv(x))), (1, 2, 2))


class UpBlock3d(nn.Module):
    """Nearest upsampling of height and width -> 3D conv -> batch norm -> ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, 3, padding=1)
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=(1.0, 2.0, 2.0)))))


class ResBlock2d(nn.Module):
    """Pre-activation residual block (norm -> ReLU -> conv, twice)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(width), nn.Conv2d(width, width, 3, padding=1)
        self.norm2, self.conv2 = nn.BatchNorm2d(width), nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))


class ResBlock3d(nn.Module):
    """Pre-activation residual block on a feature volume."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm3d(width), nn.Conv3d(width, width, 3, padding=1)
        self.norm2, self.conv2 = nn.BatchNorm3d(width), nn.Conv3d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))


class ResBottleneck(nn.Module):
    """ResNet bottleneck (1x1 -> 3x3 -> 1x1, a quarter of the width inside); a strided 1x1 skip when downsampling."""

    def __init__(self, width: int, stride: int) -> None:
        super().__init__()
        inner = width // 4
        self.conv1, self.norm1 = nn.Conv2d(width, inner, 1), nn.BatchNorm2d(inner)
        self.conv2, self.norm2 = nn.Conv2d(inner, inner, 3, padding=1, stride=stride), nn.BatchNorm2d(inner)
        self.conv3, self.norm3 = nn.Conv2d(inner, width, 1), nn.BatchNorm2d(width)
        self.stride = stride
        if stride != 1:
            self.skip, self.norm4 = nn.Conv2d(width, width, 1, stride=stride), nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = F.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        skip = self.norm4(self.skip(x)) if self.stride != 1 else x
        return F.relu(out + skip)


class Encoder3d(nn.Module):
    """Hourglass encoder on volumes: every level's output is kept for the skip connections."""

    def __init__(self, expansion: int, cin: int, levels: int, cap: int) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            DownBlock3d(cin if i == 0 else channels(expansion, i, cap), channels(expansion, i + 1, cap))
            for i in range(levels))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder3d(nn.Module):
    """Hourglass decoder on volumes: upsample, concatenate the encoder's level, finish with conv-norm-ReLU."""

    def __init__(self, expansion: int, cin: int, levels: int, cap: int) -> None:
        super().__init__()
        self.up_blocks = nn.ModuleList(
            UpBlock3d((1 if i == levels - 1 else 2) * channels(expansion, i + 1, cap), channels(expansion, i, cap))
            for i in reversed(range(levels)))
        self.out_channels = expansion + cin
        self.conv = nn.Conv3d(self.out_channels, self.out_channels, 3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_channels)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        skips = list(skips)
        out = skips.pop()
        for block in self.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return F.relu(self.norm(self.conv(out)))


class Hourglass3d(nn.Module):
    """U-Net on feature volumes (Newell et al. 2016's hourglass), pooling height and width only."""

    def __init__(self, expansion: int, cin: int, levels: int, cap: int) -> None:
        super().__init__()
        self.encoder = Encoder3d(expansion, cin, levels, cap)
        self.decoder = Decoder3d(expansion, cin, levels, cap)
        self.out_channels = self.decoder.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class AntiAliasDownsample(nn.Module):
    """Gaussian blur (sigma = (1/scale - 1)/2) then subsampling by 1/scale, per channel (FOMM's band-limited resize)."""

    def __init__(self, channels_: int, scale: float) -> None:
        super().__init__()
        self.scale = scale
        sigma = (1 / scale - 1) / 2
        size = 2 * round(sigma * 4) + 1
        self.pad_before = size // 2
        self.pad_after = self.pad_before - 1 if size % 2 == 0 else self.pad_before
        axis = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        one_d = torch.exp(-axis**2 / (2 * sigma**2)) if sigma > 0 else (axis == 0).float()
        kernel = one_d[:, None] * one_d[None, :]
        kernel = kernel / kernel.sum()
        self.register_buffer("weight", kernel.expand(channels_, 1, size, size).clone())
        self.step = int(round(1 / scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return x
        x = F.pad(x, (self.pad_before, self.pad_after, self.pad_before, self.pad_after))
        x = F.conv2d(x, self.weight, groups=x.shape[1])
        return x[:, :, :: self.step, :: self.step]


def coordinate_grid_3d(depth: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(D, H, W, 3) grid of (x, y, z) in [-1, 1], the layout F.grid_sample reads."""
    def axis(n: int) -> torch.Tensor:
        return torch.linspace(-1.0, 1.0, n, device=like.device, dtype=like.dtype) if n > 1 else like.new_zeros(1)
    z, y, x = torch.meshgrid(axis(depth), axis(height), axis(width), indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def coordinate_grid_2d(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(H, W, 2) grid of (x, y) in [-1, 1]."""
    y, x = torch.meshgrid(torch.linspace(-1.0, 1.0, height, device=like.device, dtype=like.dtype),
                          torch.linspace(-1.0, 1.0, width, device=like.device, dtype=like.dtype), indexing="ij")
    return torch.stack([x, y], dim=-1)


def keypoint_gaussians(keypoints: torch.Tensor, shape: tuple[int, int, int], variance: float) -> torch.Tensor:
    """(B, K, D, H, W) isotropic Gaussians exp(-|p - kp|^2 / (2 variance)) around (B, K, 3) keypoints."""
    grid = coordinate_grid_3d(*shape, like=keypoints)
    diff = grid[None, None] - keypoints[:, :, None, None, None, :]
    return torch.exp(-0.5 * (diff**2).sum(-1) / variance)


def degrees_to_radians(degrees: torch.Tensor) -> torch.Tensor:
    return degrees * (math.pi / 180.0)
