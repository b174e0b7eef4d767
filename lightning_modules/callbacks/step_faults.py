"""The `after_step` faults of dtl_foundation.faults inside a training run (set DTL_FAULT to use them)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from dtl_foundation import faults


def _poison(batch: Any) -> None:
    if isinstance(batch, dict):
        for value in batch.values():
            _poison(value)
    elif isinstance(batch, torch.Tensor) and batch.is_floating_point():
        batch.fill_(float("nan"))


class StepFaults(L.Callback):
    """Acts on DTL_FAULT=after_step:<action>:<step> when the run's global step reaches <step>."""

    def __init__(self) -> None:
        self.poison_next = False

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self.poison_next:
            self.poison_next = False
            _poison(batch)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if faults.at_step(trainer.global_step) is not None:  # `nan`: the other actions do not return
            self.poison_next = True
