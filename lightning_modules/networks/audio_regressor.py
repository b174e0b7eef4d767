"""A deterministic audio -> ARKit blendshape network: temporal convolutions and a bidirectional GRU."""

from __future__ import annotations

import torch
from torch import nn

from dtl_foundation.arkit import NUM_BLENDSHAPES
from dtl_foundation.mead import NUM_EMOTIONS


class ResidualTemporalConv(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C)
        h = self.conv(self.norm(x).transpose(1, 2)).transpose(1, 2)
        return x + self.drop(nn.functional.gelu(h))


class AudioToBlendshapeRegressor(nn.Module):
    """Audio features + emotion label/level + first-frame expression -> (B, T, 52) in [0, 1]."""

    def __init__(self, audio_dim: int, hidden: int = 128, layers: int = 2, kernel_size: int = 5,
                 dropout: float = 0.1, emotion_dim: int = 32, max_level: int = 3) -> None:
        super().__init__()
        self.audio_in = nn.Linear(audio_dim, hidden)
        self.emotion = nn.Embedding(NUM_EMOTIONS, emotion_dim)
        self.level = nn.Embedding(max_level + 1, emotion_dim)
        self.condition = nn.Linear(emotion_dim + NUM_BLENDSHAPES, hidden)
        self.blocks = nn.Sequential(*[ResidualTemporalConv(hidden, kernel_size, dropout) for _ in range(layers)])
        self.gru = nn.GRU(hidden, hidden // 2, batch_first=True, bidirectional=True)
        self.out = nn.Linear(hidden, NUM_BLENDSHAPES)

    def forward(self, audio: torch.Tensor, emotion: torch.Tensor, level: torch.Tensor,
                init: torch.Tensor) -> torch.Tensor:
        cond = self.condition(torch.cat([self.emotion(emotion) + self.level(level), init], dim=-1))
        h = self.blocks(self.audio_in(audio) + cond[:, None, :])
        h, _ = self.gru(h)
        return torch.sigmoid(self.out(h))
