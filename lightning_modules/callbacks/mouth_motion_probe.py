"""Logs, during renderer training, whether motion transfer moves the mouth with the jaw (metrics/mouth_motion.py)."""

from __future__ import annotations

import lightning as L

from metrics.mouth_motion import JawProbe, jaw_probe, probe_renderer


class MouthMotionProbe(L.Callback):
    """Every `every_n_steps` generator steps: drive the jaw-only rig probe through the renderer being trained and log
    probe/mouth_r, probe/mouth_change_ratio and probe/upper_face_ratio (one curve per run on the dashboard)."""

    def __init__(self, every_n_steps: int = 50, speaker: str = "M001", frames: int = 50) -> None:
        self.every_n_steps, self.speaker, self.frames = every_n_steps, speaker, frames
        self.probe: JawProbe | None = None
        self.last_probed = -1
        self.batches = 0  # training batches so far, kept in checkpoints so a resumed run continues the axis

    def state_dict(self) -> dict:
        return {"batches": self.batches, "last_probed": self.last_probed}

    def load_state_dict(self, state_dict: dict) -> None:
        self.batches, self.last_probed = state_dict["batches"], state_dict["last_probed"]

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        # The step Lightning logs train/* and val/* at is the number of batches before this one, not global_step
        # (which counts both optimizers' steps): the probe's records share that axis (CSV, W&B x-axis).
        logged_step = self.batches
        self.batches = batches = logged_step + 1
        if batches % self.every_n_steps or batches == self.last_probed or not trainer.is_global_zero:
            return
        self.last_probed = batches
        if self.probe is None:
            self.probe = jaw_probe(self.speaker, image_size=pl_module.model.image_size, frames=self.frames)
        scores = probe_renderer(pl_module.model, self.probe)
        # Straight to the loggers: one record per probe (self.log would repeat the value at every logging step).
        for logger in trainer.loggers:
            logger.log_metrics({f"probe/{k}": v for k, v in scores.items()}, step=logged_step)
