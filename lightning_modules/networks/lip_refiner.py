"""Lip refinement network: an LSTM audio encoder and a CNN emotion encoder recalibrate the 27 mouth coefficients."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dtl_foundation.arkit import MOUTH_INDICES, NUM_BLENDSHAPES


class EmotionEncoder(nn.Module):
    """Temporal CNN over the whole expression sequence (B, T, 52): per-frame features plus a masked-mean summary."""

    def __init__(self, dim: int, layers: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        blocks, channels = [], NUM_BLENDSHAPES
        for _ in range(layers):
            blocks += [nn.Conv1d(channels, dim, kernel_size, padding=kernel_size // 2), nn.GELU(), nn.Dropout(dropout)]
            channels = dim
        self.convs = nn.Sequential(*blocks)

    def forward(self, expression: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.convs(expression.transpose(1, 2)).transpose(1, 2)
        m = mask[..., None].to(h.dtype)
        return h, (h * m).sum(1) / m.sum(1).clamp(min=1)


class LipRefinerNet(nn.Module):
    """(audio features, expression sequence in standardised units, mask) -> correction of the 27 jaw/mouth
    coefficients, standardised. The output layer starts at zero, so the untrained refiner changes nothing."""

    def __init__(self, audio_dim: int, audio_hidden: int = 64, lstm_layers: int = 2, emotion_dim: int = 64,
                 emotion_layers: int = 3, kernel_size: int = 5, hidden: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.audio_in = nn.Linear(audio_dim, 2 * audio_hidden)
        self.audio_encoder = nn.LSTM(2 * audio_hidden, audio_hidden, num_layers=lstm_layers, batch_first=True,
                                     bidirectional=True, dropout=dropout if lstm_layers > 1 else 0.0)
        self.emotion_encoder = EmotionEncoder(emotion_dim, emotion_layers, kernel_size, dropout)
        mouth = len(MOUTH_INDICES)
        self.head = nn.Sequential(nn.Linear(2 * audio_hidden + 2 * emotion_dim + mouth, hidden), nn.GELU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, mouth))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        self.register_buffer("mouth_index", torch.tensor(MOUTH_INDICES), persistent=False)

    def encode_audio(self, audio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Bidirectional LSTM over the real frames only: padded batches are packed (slower), full ones are not."""
        x = self.audio_in(audio)
        if bool(mask.all()):
            return self.audio_encoder(x)[0]
        packed = pack_padded_sequence(x, mask.sum(1).clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        return pad_packed_sequence(self.audio_encoder(packed)[0], batch_first=True, total_length=x.shape[1])[0]

    def forward(self, audio: torch.Tensor, expression: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        per_frame, summary = self.emotion_encoder(expression, mask)
        features = [self.encode_audio(audio, mask), per_frame, summary[:, None].expand_as(per_frame),
                    expression.index_select(-1, self.mouth_index)]
        return self.head(torch.cat(features, dim=-1))


class LipRefinement(nn.Module):
    """Lip refinement for inference: the network with the blendshape statistics it works in (what a checkpoint needs
    to refine); the LightningModule in lightning_modules/lip_refiner.py only trains it."""

    def __init__(self, net: LipRefinerNet) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("bs_mean", torch.zeros(NUM_BLENDSHAPES))
        self.register_buffer("bs_std", torch.ones(NUM_BLENDSHAPES))
        self.register_buffer("mouth_index", torch.tensor(MOUTH_INDICES), persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.bs_mean) / self.bs_std

    def refine(self, source: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """source (B, T, 52) in [0, 1] -> the same sequence with its 27 jaw/mouth coefficients refined."""
        z = self.normalize(source)
        delta = self.net(audio, z, mask)
        mouth = z.index_select(-1, self.mouth_index) + delta
        mouth = mouth * self.bs_std[self.mouth_index] + self.bs_mean[self.mouth_index]
        return source.index_copy(-1, self.mouth_index, mouth.clamp(0.0, 1.0))
