"""Corrupted mouths to learn refinement from: lagged, smeared, damped or exaggerated, noisy jaw/mouth tracks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dtl_foundation.arkit import MOUTH_INDICES


def shift_in_time(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """x (B, T, C) delayed by shift[b] frames (negative: advanced), edges held."""
    t = x.shape[1]
    index = (torch.arange(t, device=x.device)[None, :] - shift[:, None]).clamp(0, t - 1)
    return x.gather(1, index[..., None].expand_as(x))


def box_blur(x: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """x (B, T, C) averaged over a centred window of width[b] frames (odd; 1 = unchanged), edges replicated."""
    out = x.clone()
    for w in width.unique().tolist():
        if w <= 1:
            continue
        rows = width == w
        y = x[rows].transpose(1, 2)  # (b, C, T)
        y = F.avg_pool1d(F.pad(y, (w // 2, w // 2), mode="replicate"), w, stride=1)
        out[rows] = y.transpose(1, 2)
    return out


def perturb_mouth(blendshapes: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None,
                  max_shift: int = 4, max_blur: int = 7, gain: tuple[float, float] = (0.3, 1.4),
                  noise: float = 0.04) -> torch.Tensor:
    """(B, T, 52) in [0, 1] with only the 27 jaw/mouth coefficients corrupted, each sequence its own way: a time
    shift, a temporal blur, a gain about the sequence's mean mouth and smooth noise (the errors of a generator)."""
    b = blendshapes.shape[0]
    device = blendshapes.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(b, generator=generator, device=device)

    index = torch.tensor(MOUTH_INDICES, device=device)
    mouth = blendshapes.index_select(-1, index)
    shift = torch.randint(-max_shift, max_shift + 1, (b,), generator=generator, device=device)
    width = 2 * torch.randint(0, max_blur // 2 + 1, (b,), generator=generator, device=device) + 1
    m = mask[..., None].to(mouth.dtype)
    mean = (mouth * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
    corrupted = box_blur(shift_in_time(mouth, shift), width)
    corrupted = mean + uniform(*gain)[:, None, None] * (corrupted - mean)
    wobble = torch.randn(mouth.shape, generator=generator, device=device)
    wobble = box_blur(wobble, torch.full((b,), 5, device=device)) * uniform(0.0, noise)[:, None, None] * 2.0
    out = blendshapes.clone()
    out[..., index] = (corrupted + wobble).clamp(0.0, 1.0)
    return out
