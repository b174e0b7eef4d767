"""A Wav2Lip-style lip-sync expert: 5 lower-half face frames and 20 MFCC columns (0.2 s) -> unit embeddings whose
cosine similarity says whether the mouth matches the audio (Prajwal et al. 2020, "A Lip Sync Expert Is All You
Need")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metrics.syncnet import MFCC_WINDOW, WINDOW_FRAMES


def conv_bn(in_channels: int, out_channels: int, stride: int | tuple[int, int] = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(True))


class SyncExpertNet(nn.Module):
    """Face tower on (B, 15, S/2, S) stacked lower halves, audio tower on (B, 1, 13, 20) MFCC; both -> (B, dim)."""

    def __init__(self, width: int = 32, embedding_dim: int = 256, num_cepstra: int = 13) -> None:
        super().__init__()
        w = width
        self.face = nn.Sequential(  # (15, S/2, S) -> halves four times
            conv_bn(3 * WINDOW_FRAMES, w, 2), conv_bn(w, 2 * w, 2), conv_bn(2 * w, 4 * w, 2), conv_bn(4 * w, 8 * w, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * w, embedding_dim),
        )
        self.audio = nn.Sequential(  # (1, 13, 20) -> (7, 10) -> (4, 5) -> (2, 3)
            conv_bn(1, w), conv_bn(w, 2 * w, 2), conv_bn(2 * w, 4 * w, 2), conv_bn(4 * w, 8 * w, 2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8 * w, embedding_dim),
        )
        self.num_cepstra = num_cepstra

    def embed_face(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 15, S/2, S) in [0, 1] -> (B, dim) unit vectors."""
        if frames.ndim != 4 or frames.shape[1] != 3 * WINDOW_FRAMES:
            raise ValueError(f"expected (B, {3 * WINDOW_FRAMES}, H, W) stacked lower-half frames, got "
                             f"{tuple(frames.shape)}")
        return F.normalize(self.face((frames - 0.5) / 0.25), dim=-1)

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, 1, 13, 20) normalised MFCC -> (B, dim) unit vectors."""
        if mfcc.shape[1:] != (1, self.num_cepstra, MFCC_WINDOW):
            raise ValueError(f"expected (B, 1, {self.num_cepstra}, {MFCC_WINDOW}) MFCC windows, got "
                             f"{tuple(mfcc.shape)}")
        return F.normalize(self.audio(mfcc), dim=-1)

    def forward(self, frames: torch.Tensor, mfcc: torch.Tensor) -> torch.Tensor:
        """(B,) cosine similarity of each pair."""
        return (self.embed_face(frames) * self.embed_audio(mfcc)).sum(-1)
