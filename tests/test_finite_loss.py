"""FiniteLoss with skip_batches on a module that optimizes by hand: refused at the start of the fit, naming it.
(The stop and the skip themselves run in a real `dtl train`: tests/faults/test_training_faults.py.)"""

from __future__ import annotations

import lightning as L
import pytest

from lightning_modules.callbacks.finite_loss import FiniteLoss


class ManualOptimization(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False


class AutomaticOptimization(L.LightningModule):
    def training_step(self, batch, batch_idx):
        return batch


def test_skipping_batches_needs_automatic_optimization():
    with pytest.raises(ValueError, match=r"skip_batches=true needs automatic optimization; ManualOptimization "):
        FiniteLoss(skip_batches=True).on_fit_start(L.Trainer(logger=False), ManualOptimization())
    FiniteLoss(skip_batches=False).on_fit_start(L.Trainer(logger=False), ManualOptimization())


def test_the_skipping_training_step_is_removed_after_the_fit():
    module, callback, trainer = AutomaticOptimization(), FiniteLoss(skip_batches=True), L.Trainer(logger=False)
    callback.on_fit_start(trainer, module)
    assert module.training_step.__name__ == "training_step_skipping_nonfinite"
    callback.on_fit_end(trainer, module)
    assert module.training_step.__func__ is AutomaticOptimization.training_step
