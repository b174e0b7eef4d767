"""EmoDiff's denoiser: a transformer over frames whose every layer is modulated (AdaLN) by time and emotion."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

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


class AdaLNBlock(nn.Module):
    """Pre-norm transformer layer whose norms are shifted, scaled and gated per frame by a condition vector
    (adaLN-Zero, Peebles & Xie 2023 sec. 3.2): the condition acts on every layer and cannot be attended away.

    `modulation` (SiLU, then a linear map to 6 dim) holds the block's weights; EmoDiffDenoiser applies all
    blocks' at once (`EmoDiffDenoiser.modulation_weights`) and passes each block its six vectors."""

    MODULATIONS = 6

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, self.MODULATIONS * dim))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, h: torch.Tensor, modulation: torch.Tensor) -> torch.Tensor:
        """h (B, T, dim); modulation (B, T or 1, 6 dim): shift, 1 + scale and gate before attention, then before
        the MLP."""
        shift1, scale1, gate1, shift2, scale2, gate2 = modulation.chunk(self.MODULATIONS, dim=-1)
        x = torch.addcmul(shift1, self.norm1(h), scale1)
        h = torch.addcmul(h, gate1, self.attn(x, x, x, need_weights=False)[0])
        x = torch.addcmul(shift2, self.norm2(h), scale2)
        return torch.addcmul(h, gate2, self.mlp(x))


class EmoDiffDenoiser(nn.Module):
    """Predicts the clean sequence (or eps / v) from x_t, the diffusion step and the conditions.

    Conditions (a dict, batch first): audio (B,T,C); emotion_vector (B,dim) or (B,T,dim) from `emotion_vector`;
    init (B,52) the first frame's expression and init_known (B,) whether it is given; context (B,T,52) +
    context_mask (B,T) frames already known (the previous window's tail, for autoregression).
    The emotion vector is the sum of a label term (emotion + level embeddings) and a style term (the style
    encoder's vector of a reference clip, or a bank entry); each term has its own learned null, used when it is
    dropped (training) or absent, and both nulls together are the unconditional model of classifier-free guidance.
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
        self.null_init = nn.Parameter(torch.zeros(dim))
        self.style_encoder = StyleEncoder(dim) if style_source in ("clip", "both") else None
        self.emotion = nn.Embedding(NUM_EMOTIONS, dim) if style_source in ("label", "both") else None
        self.level = nn.Embedding(max_level + 1, dim) if style_source in ("label", "both") else None
        self.null_label = nn.Parameter(torch.zeros(dim))
        self.null_style = nn.Parameter(torch.zeros(dim))
        self.condition_norm = nn.LayerNorm(dim)
        self.learned_positions = nn.Parameter(torch.zeros(max_frames, dim)) if positional == "learned" else None
        self.blocks = nn.ModuleList(AdaLNBlock(dim, heads, dropout) for _ in range(layers))
        self.out_norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.out_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.out = nn.Linear(dim, NUM_BLENDSHAPES)
        for layer in (self.out_modulation[1], self.out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        # 1 where modulation_weights' output is a scale: each block's shift, scale, gate (attention) and shift,
        # scale, gate (MLP), then the output's shift, scale
        scales = torch.tensor([0.0, 1.0, 0.0] * 2 * layers + [0.0, 1.0]).repeat_interleave(dim)
        self.register_buffer("scale_ones", scales, persistent=False)

    def encode_style(self, style: torch.Tensor, style_mask: torch.Tensor) -> torch.Tensor:
        """(B, dim) style-encoder vectors of reference clips (already standardised); rows without frames give 0."""
        if self.style_encoder is None:
            return style.new_zeros(style.shape[0], self.dim)
        return self.style_encoder(style, style_mask)

    def emotion_vector(self, emotion: torch.Tensor, level: torch.Tensor, style_embedding: torch.Tensor | None,
                       *, drop_label: torch.Tensor | None = None,
                       drop_style: torch.Tensor | None = None) -> torch.Tensor:
        """(B, dim): label term + style term. `style_embedding` (B, dim) or None for none; a dropped (True) or
        missing part takes its learned null."""
        b = emotion.shape[0]
        null_label = self.null_label.expand(b, -1)
        if self.emotion is not None:
            label = self.emotion(emotion) + self.level(level)
            if drop_label is not None:
                label = torch.where(drop_label[:, None], null_label, label)
        else:
            label = null_label
        null_style = self.null_style.expand(b, -1)
        if style_embedding is None or self.style_encoder is None:
            style = null_style
        else:
            style = style_embedding if drop_style is None else torch.where(drop_style[:, None], null_style,
                                                                           style_embedding)
        return label + style

    def null_vector(self, batch: int) -> torch.Tensor:
        """(B, dim): the unconditional emotion vector (both terms dropped), for classifier-free guidance."""
        return (self.null_label + self.null_style).expand(batch, -1)

    def encode_frames(self, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, T, dim): everything of the frame input but x_t (known context, audio, positions); fixed per window."""
        frames = cond["audio"].shape[1]
        context_mask = cond["context_mask"].to(cond["audio"].dtype)[..., None]
        known = torch.cat([cond["context"] * context_mask, context_mask], dim=-1)
        h = F.linear(known, self.frames_in.weight[:, NUM_BLENDSHAPES:], self.frames_in.bias)
        h = h + self.audio_in(cond["audio"])
        if self.positional == "sinusoidal":
            h = h + sinusoidal_embedding(torch.arange(frames, device=h.device), self.dim).to(h.dtype)
        elif self.positional == "learned":
            h = h + self.learned_positions[:frames].to(h.dtype)
        return h

    def encode_condition(self, emotion_vector: torch.Tensor, init: torch.Tensor,
                         init_known: torch.Tensor | None = None) -> torch.Tensor:
        """(k B, 1 or T, dim): the time-free part of the adaLN condition; fixed per window. `emotion_vector`
        ((k B, dim) or (k B, T, dim)) may stack k variants (guidance's conditional and null halves) of one batch
        of B initial expressions `init` (B, 52), which are encoded once."""
        h = self.init_in(init)
        if init_known is not None:
            h = torch.where(init_known[:, None], h, self.null_init.to(h.dtype).expand_as(h))
        emotion = emotion_vector.to(h.dtype)
        emotion = emotion[:, None] if emotion.ndim == 2 else emotion
        return self.condition_norm(emotion) + h.repeat(emotion.shape[0] // h.shape[0], 1)[:, None]

    def modulation_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every block's adaLN modulation and the output's as one linear map of SiLU(c), (weight, bias), with the
        1 of each (1 + scale) in the bias: one matrix product a network call instead of one a block. Fixed while
        the parameters are: sampling computes it once a window."""
        linears = [block.modulation[1] for block in self.blocks] + [self.out_modulation[1]]
        weight = torch.cat([linear.weight for linear in linears])
        return weight, torch.cat([linear.bias for linear in linears]) + self.scale_ones

    def denoise_encoded(self, x_t: torch.Tensor, t: torch.Tensor, frames: torch.Tensor, condition: torch.Tensor,
                        modulation_weights: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The model output from x_t (B, T, 52), t (B,) and the encoded conditions: `frames` (B, T, dim) from
        encode_frames, `condition` from encode_condition, (k B, ...) for k stacked variants: (k B, T, 52) out.
        `modulation_weights`: those of `modulation_weights()`, when the caller keeps them across calls."""
        h = F.linear(x_t, self.frames_in.weight[:, :NUM_BLENDSHAPES]) + frames
        repeats = condition.shape[0] // h.shape[0]
        h = h.repeat(repeats, 1, 1)
        c = condition + self.time_mlp(sinusoidal_embedding(t, self.dim).to(h.dtype)).repeat(repeats, 1)[:, None]
        weight, bias = self.modulation_weights() if modulation_weights is None else modulation_weights
        modulations = F.linear(F.silu(c), weight, bias).split(AdaLNBlock.MODULATIONS * self.dim, dim=-1)
        for block, modulation in zip(self.blocks, modulations):
            h = block(h, modulation)
        shift, scale = modulations[-1].chunk(2, dim=-1)
        return self.out(torch.addcmul(shift, self.out_norm(h), scale))

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        condition = self.encode_condition(cond["emotion_vector"], cond["init"], cond.get("init_known"))
        return self.denoise_encoded(x_t, t, self.encode_frames(cond), condition)
