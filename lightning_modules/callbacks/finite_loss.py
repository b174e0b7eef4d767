"""Stop training at the first NaN or inf loss, before its backward pass and optimizer step reach the weights (and
so before any checkpoint holds them), naming the step and the batch's clips; or, when asked (`skip_batches`), skip
such a batch instead: no backward pass, no optimizer step, a warning naming it and a running count logged as
`train/nonfinite_skipped`."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or inf; the message names the step and the batch's clips."""


def batch_clip_ids(trainer: L.Trainer, batch: Any) -> list[str]:
    """The clip ids of a batch (its `clip_index` into the training set's clips), else its indices as given."""
    if not isinstance(batch, dict) or "clip_index" not in batch:
        return ["(the batch carries no clip_index)"]
    indices = [int(i) for i in batch["clip_index"].reshape(-1)]
    clips = getattr(getattr(trainer.train_dataloader, "dataset", None), "clips", None)
    return [clips[i].clip_id for i in indices] if clips is not None else [f"clip_index {i}" for i in indices]


def _loss_of(output: Any) -> torch.Tensor | None:
    return output.get("loss") if isinstance(output, dict) else output


def _describe(loss: torch.Tensor) -> str:
    return "NaN" if torch.isnan(loss).any() else "inf"


class FiniteLoss(L.Callback):
    def __init__(self, skip_batches: bool = False) -> None:
        self.skip_batches = skip_batches
        self.skipped = 0
        self.batch: Any = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self.batch = batch

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.skip_batches:
            pl_module.log("train/nonfinite_skipped", float(self.skipped))

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.skip_batches:
            return
        if not pl_module.automatic_optimization:  # its training_step runs backward and the optimizers itself
            raise ValueError(f"callbacks.finite_loss.skip_batches=true needs automatic optimization; "
                             f"{type(pl_module).__name__} optimizes manually: set it to false")
        # Lightning skips the backward pass and the optimizer step of a batch whose training_step returns None
        pl_module.training_step = self._skipping(trainer, pl_module, pl_module.training_step)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.__dict__.pop("training_step", None)  # the class's own again

    def _skipping(self, trainer: L.Trainer, pl_module: L.LightningModule, training_step):
        def training_step_skipping_nonfinite(*args: Any, **kwargs: Any) -> Any:
            output = training_step(*args, **kwargs)
            loss = _loss_of(output)
            finite = loss is None or bool(torch.isfinite(loss).all())
            if trainer.strategy.reduce_boolean_decision(finite, all=True):  # all ranks skip together, or none
                return output
            self.skipped += 1
            value = _describe(loss) if not finite else "NaN or inf on another rank"
            log.warning("training loss is %s at step %d (epoch %d); the batch's clips: %s. Skipped "
                        "(callbacks.finite_loss.skip_batches=true): %d batch(es) so far", value, trainer.global_step,
                        trainer.current_epoch, ", ".join(batch_clip_ids(trainer, self.batch)), self.skipped)
            return None

        return training_step_skipping_nonfinite

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        if torch.isfinite(loss).all():
            return
        clips = ", ".join(batch_clip_ids(trainer, self.batch))
        raise NonFiniteLoss(f"training loss is {_describe(loss)} at step {trainer.global_step} (epoch "
                            f"{trainer.current_epoch}); the batch's clips: {clips}. The run stops here: its "
                            f"checkpoints hold the last finite weights (callbacks.finite_loss.skip_batches=true "
                            f"skips such batches instead)")

    def state_dict(self) -> dict[str, Any]:
        return {"skipped": self.skipped}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.skipped = state_dict.get("skipped", 0)
