"""The baseline: a deterministic audio-to-blendshape regressor (the "no diffusion" row of the ablations)."""

from __future__ import annotations

from functools import partial
from typing import Any

import lightning as L
import torch
from torch import nn

from dtl_foundation.arkit import MOUTH_INDICES, NUM_BLENDSHAPES
from lightning_modules.blendshape_evaluation import BlendshapeEvaluation, evaluate_long_audio
from lightning_modules.emotion_classifier import BlendshapeEmotionClassifier
from lightning_modules.losses import masked_weighted_mse
from lightning_modules.optimization import optimizer_config


def velocity(x: torch.Tensor) -> torch.Tensor:
    return x[:, 1:] - x[:, :-1]


class BaselineRegressor(L.LightningModule):
    """Regresses blendshapes from audio, emotion, level and the initial expression in one pass over the whole clip.

    Testing logs what EmoDiff's does (see BlendshapeEvaluation): its diversity is that of two passes (0 for this
    deterministic model, measured, not assumed), and its boundary continuity is measured at the data window's
    multiples, positions that mean nothing to a model without windows (the row that shows a ratio of about 1).
    """

    def __init__(self, net: nn.Module, optimizer: partial, scheduler: partial | None = None,
                 mouth_weight: float = 2.0, velocity_weight: float = 0.5,
                 emotion_classifier: str | None = None) -> None:
        super().__init__()
        # Only plain values go into checkpoints (they stay loadable with torch.load(weights_only=True)).
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        weights = torch.ones(NUM_BLENDSHAPES)
        weights[MOUTH_INDICES] = mouth_weight
        self.register_buffer("coefficient_weights", weights, persistent=False)
        self.val_metrics = BlendshapeEvaluation("val")
        self.test_metrics = BlendshapeEvaluation("test")
        self._judge: dict[str, nn.Module] = {}  # the frozen emotion judge, kept out of the state dict

    def setup(self, stage: str) -> None:
        if self.hparams.emotion_classifier and not self._judge:
            self._judge["judge"] = BlendshapeEmotionClassifier.load_frozen(self.hparams.emotion_classifier)

    def judge(self) -> nn.Module | None:
        return self._judge["judge"].to(self.device) if self._judge else None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(batch["audio"], batch["emotion"], batch["level"], batch["init"])

    def loss(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        target, mask = batch["blendshapes"], batch["mask"]
        position = masked_weighted_mse(pred, target, mask, self.coefficient_weights)
        vel = masked_weighted_mse(velocity(pred), velocity(target), mask[:, 1:] & mask[:, :-1],
                                  self.coefficient_weights)
        return {"loss": position + self.hparams.velocity_weight * vel, "position": position, "velocity": vel}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.loss(self(batch), batch)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True,
                      batch_size=batch["audio"].shape[0])
        return losses["loss"]

    def _evaluate(self, batch: dict[str, Any], stage: str, metrics: BlendshapeEvaluation) -> None:
        pred = self(batch)
        metrics.update(pred, batch, judge=self.judge(), second_sample=self(batch) if stage == "test" else None)
        self.log(f"{stage}/loss", self.loss(pred, batch)["loss"], batch_size=batch["audio"].shape[0], sync_dist=True)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_metrics)

    def on_validation_epoch_end(self) -> None:
        self.val_metrics.log_epoch(self)

    def on_test_epoch_end(self) -> None:
        window = int(self.trainer.datamodule.hparams.window)
        evaluate_long_audio(self, self.test_metrics, self, window, window)
        self.test_metrics.log_epoch(self)

    def configure_optimizers(self) -> dict[str, Any]:
        return optimizer_config("BaselineRegressor", self.optimizer_factory, self.scheduler_factory, self.parameters())
