"""The blendshape metrics every generator logs per stage: mouth error, audio-mouth sync and its lag, FDD."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from metrics.blendshape import AudioMouthSync, MouthError, UpperFaceDynamicsDeviation


class BlendshapeEvaluation(nn.Module):
    """Streams predictions of one stage (val or test) and logs `<stage>/mouth_error`, `<stage>/sync`,
    `<stage>/sync_lag` and `<stage>/upper_face_dd` once per epoch (states reduced across processes)."""

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage
        self.mouth_error = MouthError()
        self.sync = AudioMouthSync()
        self.upper_face = UpperFaceDynamicsDeviation()

    def update(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> None:
        self.mouth_error.update(pred, batch["blendshapes"], batch["mask"])
        self.sync.update(pred, batch["loudness"], batch["mask"])
        self.upper_face.update(pred, batch["blendshapes"], batch["mask"])

    def log_epoch(self, module: L.LightningModule) -> dict[str, float]:
        if not self.mouth_error.update_called:
            return {}
        sync = self.sync.compute()
        values = {f"{self.stage}/mouth_error": self.mouth_error.compute(), f"{self.stage}/sync": sync["sync"],
                  f"{self.stage}/sync_lag": sync["lag"], f"{self.stage}/upper_face_dd": self.upper_face.compute()}
        module.log_dict(values)
        for metric in (self.mouth_error, self.sync, self.upper_face):
            metric.reset()
        return {k: float(v) for k, v in values.items()}
