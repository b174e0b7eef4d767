"""Stop training at the first NaN or inf loss, before its backward pass and optimizer step reach the weights (and
so before any checkpoint holds them), naming the step and the batch's clips."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or inf; the message names the step and the batch's clips."""


def batch_clip_ids(trainer: L.Trainer, batch: Any) -> list[str]:
    """The clip ids of a batch (its `clip_index` into the training set's clips), else its indices as given."""
    if not isinstance(batch, dict) or "clip_index" not in batch:
        return ["(the batch carries no clip_index)"]
    indices = [int(i) for i in batch["clip_index"].reshape(-1)]
    clips = getattr(getattr(trainer.train_dataloader, "dataset", None), "clips", None)
    return [clips[i].clip_id for i in indices] if clips is not None else [f"clip_index {i}" for i in indices]


class FiniteLoss(L.Callback):
    def __init__(self) -> None:
        self.batch: Any = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.batch = batch

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if torch.isfinite(loss).all():
            return
        value = "NaN" if torch.isnan(loss).any() else "inf"
        raise NonFiniteLoss(f"training loss is {value} at step {trainer.global_step} (epoch {trainer.current_epoch}); "
                            f"the batch's clips: {', '.join(batch_clip_ids(trainer, self.batch))}. The run stops "
                            f"here: its checkpoints hold the last finite weights")
