"""A trainable lip-sync expert (Wav2Lip's SyncNet recipe on our face crops): in-domain LSE-C / LSE-D and sync AUC."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torchmetrics.classification import BinaryAUROC

from datamodules.video_frames_datamodule import lower_half_window, normalised_mfcc
from lightning_modules.networks.syncnet_expert import SyncExpertNet
from lightning_modules.optimization import optimizer_config
from metrics.syncnet import (MAX_OFFSET, MFCC_PER_FRAME, MFCC_WINDOW, WINDOW_FRAMES, LipSyncScore, lip_sync_score,
                             offset_distances)


class SyncNetExpert(L.LightningModule):
    """SyncExpertNet trained with binary cross-entropy on `scale * cosine + bias` (in sync = 1, shifted audio = 0).

    Validation and test log the ROC AUC of the cosine similarity over in-sync and shifted pairs (`<stage>/auc`).
    `sync_score` scores a whole video as SyncNet's LSE-C / LSE-D do (metrics.syncnet's offset search over
    +-15 frames), with this expert's unit embeddings in place of SyncNet's.
    """

    def __init__(self, optimizer: partial | None = None, scheduler: partial | None = None, width: int = 32,
                 embedding_dim: int = 256, image_size: int = 64, crop_scale: float = 1.3,
                 initial_scale: float = 5.0) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.net = SyncExpertNet(width, embedding_dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(initial_scale)))
        self.logit_bias = nn.Parameter(torch.tensor(0.0))
        self.val_auc = BinaryAUROC()
        self.test_auc = BinaryAUROC()

    def forward(self, frames: torch.Tensor, mfcc: torch.Tensor) -> torch.Tensor:
        """(B,) cosine similarity between the lip window and the audio window."""
        return self.net(frames, mfcc)

    def _loss(self, similarity: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(self.logit_scale * similarity + self.logit_bias, label)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self._loss(self(batch["frames"], batch["mfcc"]), batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["label"].shape[0])
        return loss

    def _evaluate(self, batch: dict[str, Any], stage: str, metric: BinaryAUROC) -> None:
        similarity = self(batch["frames"], batch["mfcc"])
        metric.update(similarity, batch["label"].long())
        self.log(f"{stage}/loss", self._loss(similarity, batch["label"]), batch_size=batch["label"].shape[0])
        self.log(f"{stage}/auc", metric, prog_bar=True, batch_size=batch["label"].shape[0])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_auc)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_auc)

    def configure_optimizers(self) -> dict[str, Any]:
        return optimizer_config("SyncNetExpert", self.optimizer_factory, self.scheduler_factory, self.parameters())

    @torch.no_grad()
    def embeddings(self, faces: np.ndarray, audio: np.ndarray, batch_size: int = 128
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """(W, dim) lip and audio embeddings of every window v of a video: frames v..v+4 and MFCC columns 4v..4v+19.

        faces: (T, S, S, 3) uint8 face crops at 25 fps (as datamodules.video_frames_datamodule crops them);
        audio: (N,) int16 mono 16 kHz.
        """
        size = self.hparams.image_size
        if faces.ndim != 4 or faces.shape[1:] != (size, size, 3):
            raise ValueError(f"expected face crops (T, {size}, {size}, 3), got {faces.shape}")
        mfcc = torch.from_numpy(normalised_mfcc(audio))
        windows = min(len(faces) - WINDOW_FRAMES + 1, (mfcc.shape[1] - MFCC_WINDOW) // MFCC_PER_FRAME + 1)
        if windows < 1:
            raise ValueError(f"too short for the sync expert: {len(faces)} frames and {len(audio)} samples")
        was_training = self.training
        self.eval()
        lips, sounds = [], []
        for start in range(0, windows, batch_size):
            stop = min(start + batch_size, windows)
            frames = torch.stack([lower_half_window(faces[v:v + WINDOW_FRAMES]) for v in range(start, stop)])
            columns = torch.stack([mfcc[None, :, v * MFCC_PER_FRAME:v * MFCC_PER_FRAME + MFCC_WINDOW]
                                   for v in range(start, stop)])
            lips.append(self.net.embed_face(frames.to(self.device)))
            sounds.append(self.net.embed_audio(columns.to(self.device)))
        self.train(was_training)
        return torch.cat(lips).cpu(), torch.cat(sounds).cpu()

    def sync_score(self, faces: np.ndarray, audio: np.ndarray, max_offset: int = MAX_OFFSET) -> LipSyncScore:
        """LSE-C / LSE-D / AV offset of one video with this expert (distances between unit embeddings, in [0, 2])."""
        lip, sound = self.embeddings(faces, audio)
        return lip_sync_score(offset_distances(lip, sound, max_offset), max_offset)

    @classmethod
    def load_frozen(cls, path: str | Path) -> "SyncNetExpert":
        model = cls.load_from_checkpoint(path, map_location="cpu", weights_only=True)
        model.eval().requires_grad_(False)
        return model
