"""The blendshape metrics every generator logs per stage: mouth error, audio-mouth sync and its lag, FDD, and where
the module gives what they need, emotion accuracy (a frozen blendshape judge), sample diversity (two draws per
condition) and boundary continuity on long audio (held-out sentences joined into >= 20 s clips)."""

from __future__ import annotations

from typing import Callable

import lightning as L
import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.utilities.distributed import gather_all_tensors

from datamodules.long_audio import long_audio_batch
from metrics.blendshape import (AudioMouthSync, EmotionAccuracy, MouthError, SampleDiversity,
                                UpperFaceDynamicsDeviation)
from metrics.boundary_continuity import BoundaryContinuity, window_boundaries

LONG_AUDIO_SECONDS = 20.0


def updated_on_any_rank(metric: Metric) -> bool:
    """A metric's compute syncs across ranks, so every rank must call it or none: ask them all, the way the metric
    itself would gather (no-op in a single process)."""
    if not metric.distributed_available_fn():
        return metric.update_called
    flag = torch.tensor([metric.update_called], dtype=torch.int32, device=metric.device)
    return any(bool(gathered.item()) for gathered in gather_all_tensors(flag, metric.process_group))


class BlendshapeEvaluation(nn.Module):
    """Streams predictions of one stage (val or test) and logs, once per epoch (states reduced across processes):
    `<stage>/mouth_error`, `<stage>/sync`, `<stage>/sync_lag`, `<stage>/upper_face_dd`; with a judge
    `<stage>/emotion_accuracy` and `<stage>/emotion_confidence`; with a second sample `<stage>/diversity`; after
    `update_long_audio` `<stage>/boundary_{velocity,acceleration}_ratio` and their `_truth` (see
    metrics/boundary_continuity.py)."""

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage
        self.mouth_error = MouthError()
        self.sync = AudioMouthSync()
        self.upper_face = UpperFaceDynamicsDeviation()
        self.emotion = EmotionAccuracy()
        self.diversity = SampleDiversity()
        self.boundary = BoundaryContinuity()

    def update(self, pred: torch.Tensor, batch: dict[str, torch.Tensor], *, judge: nn.Module | None = None,
               second_sample: torch.Tensor | None = None) -> None:
        """pred: (B, T, 52); judge: a frozen emotion classifier; second_sample: another draw for the same batch."""
        self.mouth_error.update(pred, batch["blendshapes"], batch["mask"])
        self.sync.update(pred, batch["loudness"], batch["mask"])
        self.upper_face.update(pred, batch["blendshapes"], batch["mask"])
        if judge is not None:
            with torch.no_grad():
                probabilities = judge(pred, batch["mask"]).softmax(-1)
            self.emotion.update_probabilities(probabilities, batch["emotion"])
        if second_sample is not None:
            self.diversity.update(torch.stack([pred, second_sample]), batch["mask"])

    def update_long_audio(self, pred: torch.Tensor, batch: dict[str, torch.Tensor], window: int, hop: int) -> None:
        """pred: (B, T, 52) for a `long_audio_batch`, generated in windows of `window` frames every `hop`."""
        boundaries = torch.zeros_like(batch["mask"])
        boundaries[:, window_boundaries(pred.shape[1], window, hop)] = True
        self.boundary.update(pred, batch["blendshapes"], batch["mask"], boundaries, batch["joins"])

    def log_epoch(self, module: L.LightningModule) -> dict[str, float]:
        if not self.mouth_error.update_called:
            return {}
        sync = self.sync.compute()
        values = {f"{self.stage}/mouth_error": self.mouth_error.compute(), f"{self.stage}/sync": sync["sync"],
                  f"{self.stage}/sync_lag": sync["lag"], f"{self.stage}/upper_face_dd": self.upper_face.compute()}
        if updated_on_any_rank(self.emotion):
            emotion = self.emotion.compute()
            values[f"{self.stage}/emotion_accuracy"] = emotion["accuracy"]
            values[f"{self.stage}/emotion_confidence"] = emotion["confidence"]
        if updated_on_any_rank(self.diversity):
            values[f"{self.stage}/diversity"] = self.diversity.compute()
        if updated_on_any_rank(self.boundary):  # a rank may hold no long-audio clip
            values.update({f"{self.stage}/{k}": v for k, v in self.boundary.compute().items()})
        module.log_dict(values)
        for metric in (self.mouth_error, self.sync, self.upper_face, self.emotion, self.diversity, self.boundary):
            metric.reset()
        return {k: float(v) for k, v in values.items()}


def evaluate_long_audio(module: L.LightningModule, metrics: BlendshapeEvaluation,
                        predict: Callable[[dict[str, torch.Tensor]], torch.Tensor], window: int, hop: int) -> None:
    """Boundary continuity on the test speakers' long audio: `predict` a `long_audio_batch` (this process's share
    of its items) and stream it into `metrics`."""
    datamodule = module.trainer.datamodule
    fps = float(getattr(datamodule, "hparams", {}).get("fps", 25.0))
    batch = long_audio_batch(datamodule.datasets["test"], LONG_AUDIO_SECONDS, fps)
    rank, world = module.global_rank, module.trainer.world_size
    batch = {k: v[rank::world].to(module.device) for k, v in batch.items()}
    if len(batch["mask"]):
        metrics.update_long_audio(predict(batch), batch, window, hop)
