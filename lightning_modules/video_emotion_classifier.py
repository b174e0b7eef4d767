"""A video-frame emotion classifier (8 MEAD emotions) on face crops: the judge behind video emotion accuracy."""

from __future__ import annotations

from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from dtl_foundation.mead import NUM_EMOTIONS
from datamodules.video_frames_datamodule import as_image_tensor
from lightning_modules.networks.frame_emotion_cnn import FrameEmotionCNN
from lightning_modules.optimization import optimizer_config


class VideoEmotionClassifier(L.LightningModule):
    """FrameEmotionCNN trained with cross-entropy on single frames; a video's emotion is the argmax of its frames'
    mean probabilities. Logs frame accuracy (`<stage>/accuracy`) and clip accuracy (`<stage>/clip_accuracy`).

    image_size and crop_scale record how the training faces were cropped (datamodules.video_frames_datamodule),
    so that evaluation crops generated videos the same way.
    """

    def __init__(self, optimizer: partial | None = None, scheduler: partial | None = None, width: int = 16,
                 blocks: int = 4, dropout: float = 0.2, image_size: int = 64, crop_scale: float = 1.3) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.net = FrameEmotionCNN(width, blocks, dropout)
        self.val_accuracy = MulticlassAccuracy(NUM_EMOTIONS, average="micro")
        self.test_accuracy = MulticlassAccuracy(NUM_EMOTIONS, average="micro")
        self._clip_probabilities: dict[int, list[torch.Tensor]] = defaultdict(list)
        self._clip_labels: dict[int, int] = {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = nn.functional.cross_entropy(self(batch["image"]), batch["emotion"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["emotion"].shape[0])
        return loss

    def _evaluate(self, batch: dict[str, Any], stage: str, metric: MulticlassAccuracy) -> None:
        logits = self(batch["image"])
        metric.update(logits, batch["emotion"])
        self.log(f"{stage}/accuracy", metric, prog_bar=True, batch_size=batch["emotion"].shape[0])
        self.log(f"{stage}/loss", nn.functional.cross_entropy(logits, batch["emotion"]),
                 batch_size=batch["emotion"].shape[0])
        for probabilities, clip, label in zip(logits.softmax(-1), batch["clip"].tolist(), batch["emotion"].tolist()):
            self._clip_probabilities[clip].append(probabilities.detach())
            self._clip_labels[clip] = label

    def _log_clip_accuracy(self, stage: str) -> None:
        if not self._clip_probabilities:
            return
        correct = [int(torch.stack(p).mean(0).argmax()) == self._clip_labels[c]
                   for c, p in self._clip_probabilities.items()]
        self.log(f"{stage}/clip_accuracy", float(np.mean(correct)))
        self._clip_probabilities.clear()
        self._clip_labels.clear()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_accuracy)

    def on_validation_epoch_end(self) -> None:
        self._log_clip_accuracy("val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_accuracy)

    def on_test_epoch_end(self) -> None:
        self._log_clip_accuracy("test")

    def configure_optimizers(self) -> dict[str, Any]:
        return optimizer_config("VideoEmotionClassifier", self.optimizer_factory, self.scheduler_factory,
                                self.parameters())

    @torch.no_grad()
    def video_probabilities(self, faces: np.ndarray, batch_size: int = 64) -> torch.Tensor:
        """(8,) mean emotion probabilities over the face crops (T, S, S, 3) uint8 of one video."""
        if faces.ndim != 4 or faces.shape[1:] != (self.hparams.image_size, self.hparams.image_size, 3):
            size = self.hparams.image_size
            raise ValueError(f"expected face crops (T, {size}, {size}, 3), got {faces.shape}")
        was_training = self.training
        self.eval()
        chunks = [self(as_image_tensor(faces[i:i + batch_size]).to(self.device)).softmax(-1)
                  for i in range(0, len(faces), batch_size)]
        self.train(was_training)
        return torch.cat(chunks).mean(0).cpu()

    @classmethod
    def load_frozen(cls, path: str | Path) -> "VideoEmotionClassifier":
        """A trained classifier in eval mode with gradients off, for metrics."""
        model = cls.load_from_checkpoint(path, map_location="cpu", weights_only=True)
        model.eval().requires_grad_(False)
        return model
