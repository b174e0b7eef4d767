"""A Slurm requeue as W&B should see it: before Lightning's SIGUSR1 handler saves, requeues and lets Slurm stop the
job, the W&B run is marked preempting and finished, so the dashboard shows it preempted (then resumed under the same
id) and the attempt's records reach the run files: Slurm stops W&B's service with the job, before it flushed them."""

from __future__ import annotations

import signal
import threading

import lightning as L
from lightning.pytorch.loggers import WandbLogger


class WandbPreemption(L.Callback):
    def __init__(self) -> None:
        self.previous = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers belong to the main thread; Lightning registers none elsewhere either
        # Lightning installs its handler when fit starts and only if none is installed, so wrap it here, after
        handler = signal.getsignal(signal.SIGUSR1)
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not callable(handler) or not loggers:
            return
        self.previous = handler

        def preempt_then_requeue(signum, frame) -> None:
            finished = []
            for logger in loggers:
                run = logger.experiment
                if hasattr(run, "mark_preempting"):  # rank 0 holds the run; other ranks a stand-in
                    run.mark_preempting()
                    run.finish(exit_code=1)
                    finished.append(logger)
            # what the job logs until Slurm stops it must not reach a finished run: those loggers leave the trainer
            trainer.loggers = [lg for lg in trainer.loggers if not any(lg is done for done in finished)]
            handler(signum, frame)

        signal.signal(signal.SIGUSR1, preempt_then_requeue)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGUSR1, self.previous)
            self.previous = None
