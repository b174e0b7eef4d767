"""A blendshape-sequence emotion classifier (8 MEAD emotions): the judge behind blendshape emotion accuracy."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from dtl_foundation.arkit import NUM_BLENDSHAPES
from dtl_foundation.mead import NUM_EMOTIONS
from lightning_modules.optimization import optimizer_config


class BlendshapeEmotionClassifier(L.LightningModule):
    """Temporal CNN over the 52 coefficients, masked mean+max pooling, 8-way emotion logits."""

    def __init__(self, optimizer: partial | None = None, hidden: int = 96, layers: int = 3, kernel_size: int = 5,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer"], logger=False)
        self.optimizer_factory = optimizer
        blocks, channels = [], NUM_BLENDSHAPES
        for _ in range(layers):
            blocks += [nn.Conv1d(channels, hidden, kernel_size, padding=kernel_size // 2), nn.GELU(),
                       nn.Dropout(dropout)]
            channels = hidden
        self.encoder = nn.Sequential(*blocks)
        self.head = nn.Linear(2 * hidden, NUM_EMOTIONS)
        self.val_accuracy = MulticlassAccuracy(NUM_EMOTIONS, average="micro")
        self.test_accuracy = MulticlassAccuracy(NUM_EMOTIONS, average="micro")

    def forward(self, blendshapes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.encoder(blendshapes.transpose(1, 2)).transpose(1, 2)
        m = mask[..., None].to(h.dtype)
        mean = (h * m).sum(1) / m.sum(1).clamp(min=1)
        peak = h.masked_fill(~mask[..., None], float("-inf")).amax(1)
        return self.head(torch.cat([mean, peak], dim=-1))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = nn.functional.cross_entropy(self(batch["blendshapes"], batch["mask"]), batch["emotion"])
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["emotion"].shape[0])
        return loss

    def _evaluate(self, batch: dict[str, Any], stage: str, metric: MulticlassAccuracy) -> None:
        logits = self(batch["blendshapes"], batch["mask"])
        metric.update(logits, batch["emotion"])
        self.log(f"{stage}/accuracy", metric, prog_bar=True, batch_size=batch["emotion"].shape[0])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_accuracy)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_accuracy)

    def configure_optimizers(self) -> dict[str, Any]:
        return optimizer_config("BlendshapeEmotionClassifier", self.optimizer_factory, None, self.parameters())

    @classmethod
    def load_frozen(cls, path: str | Path) -> "BlendshapeEmotionClassifier":
        """A trained classifier in eval mode with gradients off, for metrics and losses of other modules."""
        model = cls.load_from_checkpoint(path, map_location="cpu", weights_only=True)
        model.eval().requires_grad_(False)
        return model
