"""EmoDiff's denoiser: a transformer over frames conditioned on audio, emotion style, initial state and time."""

from __future__ import annotations

import math

import torch
from torch import nn

from dtl_foundation.arkit import NUM_BLENDSHAPES
from dtl_foundation.mead import NUM_EMOTIONS


def sinusoidal_embedding(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sinusoids (Vaswani et al. 2017, sec. 3.5) of integer or real positions, (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.float()[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class StyleEncoder(nn.Module):
    """A reference expression clip of any content -> one style vector (masked mean over a small transformer)."""

    def __init__(self, dim: int, layers: int = 2, heads: int = 4) -> None:
        super().__init__()
        self.inp = nn.Linear(NUM_BLENDSHAPES, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.1, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, style: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, S, 52) clip and (B, S) mask -> (B, dim); a row without any frame (label-only) gives zeros."""
        attend = mask | ~mask.any(1, keepdim=True)  # an all-padded row would make attention NaN
        h = self.encoder(self.inp(style), src_key_padding_mask=~attend)
        weights = mask[..., None].to(h.dtype)
        return (h * weights).sum(1) / weights.sum(1).clamp(min=1)


class EmoDiffDenoiser(nn.Module):
    """Predicts the clean sequence (or eps / v) from x_t, the diffusion step and the conditions.

    Conditions (a dict, batch first): audio (B,T,C); style (B,S,52) + style_mask, or emotion/level labels;
    init (B,52) the first frame's expression; context (B,T,52) + context_mask (B,T) frames already known
    (the previous window's tail, for autoregression); drop (B,) True where the style/emotion condition is
    replaced by learned null embeddings (classifier-free guidance).
    """

    def __init__(self, audio_dim: int, dim: int = 128, layers: int = 4, heads: int = 4, dropout: float = 0.1,
                 style_source: str = "both", positional: str = "sinusoidal", max_frames: int = 512,
                 max_level: int = 3) -> None:
        super().__init__()
        if style_source not in ("clip", "label", "both"):
            raise ValueError(f"style_source must be clip, label or both, not {style_source!r}")
        if positional not in ("sinusoidal", "learned", "none"):
            raise ValueError(f"positional must be sinusoidal, learned or none, not {positional!r}")
        self.dim, self.style_source, self.positional = dim, style_source, positional
        self.frames_in = nn.Linear(2 * NUM_BLENDSHAPES + 1, dim)  # x_t, known context values, context mask
        self.audio_in = nn.Sequential(nn.Linear(audio_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.init_in = nn.Linear(NUM_BLENDSHAPES, dim)
        self.style_encoder = StyleEncoder(dim) if style_source in ("clip", "both") else None
        self.emotion = nn.Embedding(NUM_EMOTIONS, dim) if style_source in ("label", "both") else None
        self.level = nn.Embedding(max_level + 1, dim) if style_source in ("label", "both") else None
        self.null_style = nn.Parameter(torch.zeros(dim))
        self.learned_positions = nn.Parameter(torch.zeros(max_frames, dim)) if positional == "learned" else None
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=dropout, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, NUM_BLENDSHAPES)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def style_vector(self, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        if self.style_encoder is not None:
            parts.append(self.style_encoder(cond["style"], cond["style_mask"]))
        if self.emotion is not None:
            parts.append(self.emotion(cond["emotion"]) + self.level(cond["level"]))
        style = torch.stack(parts).sum(0)
        drop = cond.get("drop")
        if drop is not None:
            style = torch.where(drop[:, None], self.null_style.to(style.dtype).expand_as(style), style)
        return style

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        batch, frames, _ = x_t.shape
        context_mask = cond["context_mask"].to(x_t.dtype)[..., None]
        h = self.frames_in(torch.cat([x_t, cond["context"] * context_mask, context_mask], dim=-1))
        h = h + self.audio_in(cond["audio"])
        if self.positional == "sinusoidal":
            h = h + sinusoidal_embedding(torch.arange(frames, device=h.device), self.dim).to(h.dtype)
        elif self.positional == "learned":
            h = h + self.learned_positions[:frames].to(h.dtype)
        tokens = torch.stack([self.time_mlp(sinusoidal_embedding(t, self.dim).to(h.dtype)),
                              self.style_vector(cond), self.init_in(cond["init"])], dim=1)
        h = self.transformer(torch.cat([tokens, h], dim=1))[:, tokens.shape[1]:]
        return self.out(self.out_norm(h))
