"""Classifier-free guidance: mixing conditional and unconditional model outputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from dtl_foundation.diffusion.samplers import Denoiser

ConditionalDenoiser = Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]
"""denoise(x_t, t, cond) -> model output; cond is a tensor or a dict/list/tuple of tensors with batch first."""


def classifier_free_guidance(uncond: torch.Tensor, cond: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """uncond + scale * (cond - uncond); 0 uncond, 1 cond (Ho & Salimans 2022 eq. 6 with w = scale - 1, as MDM/EDGE)."""
    return uncond + scale * (cond - uncond)


def guided_denoiser(denoise_cond: Denoiser, denoise_uncond: Denoiser, scale: float | torch.Tensor) -> Denoiser:
    """A sampler-ready denoise(x_t, t) guiding between two denoisers (Ho & Salimans 2022 eq. 6)."""
    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return classifier_free_guidance(denoise_uncond(x_t, t), denoise_cond(x_t, t), scale)
    return denoise


def _concat_batch(a: Any, b: Any) -> Any:
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b])
    if isinstance(a, Mapping):
        return {key: _concat_batch(a[key], b[key]) for key in a}
    if isinstance(a, (list, tuple)):
        return type(a)(_concat_batch(x, y) for x, y in zip(a, b, strict=True))
    if a is None and b is None:
        return None
    raise TypeError(f"cannot batch a condition of type {type(a).__name__}")


def cfg_denoise(denoise: ConditionalDenoiser, x_t: torch.Tensor, t: torch.Tensor, cond: Any, null_cond: Any,
                scale: float | torch.Tensor) -> torch.Tensor:
    """Guided output from one network call on the doubled batch [cond; null_cond] (Ho & Salimans 2022 eq. 6)."""
    if isinstance(scale, (int, float)) and scale == 1:
        return denoise(x_t, t, cond)
    both = denoise(torch.cat([x_t, x_t]), torch.cat([t, t]), _concat_batch(cond, null_cond))
    out_cond, out_uncond = both.chunk(2)
    return classifier_free_guidance(out_uncond, out_cond, scale)
