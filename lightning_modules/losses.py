"""Losses shared by the blendshape models."""

from __future__ import annotations

import torch


def masked_weighted_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                        weights: torch.Tensor) -> torch.Tensor:
    """Per-coefficient weighted MSE over (B, T, D), averaged over the frames where `mask` (B, T) is True."""
    err = (pred - target).pow(2) * weights
    m = mask[..., None].to(err.dtype)
    return (err * m).sum() / (m.sum() * weights.sum()).clamp(min=1e-8)
