"""EmoDiff: conditional diffusion over ARKit blendshape sequences (audio, emotion style, initial state)."""

from __future__ import annotations

from functools import partial
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from dtl_foundation.arkit import MOUTH_INDICES, NUM_BLENDSHAPES
from lightning_modules.diffusion import (cfg_denoise, ddim_sample, ddpm_sample, make_schedule, predicted_x0,
                                         prediction_target, q_sample)
from lightning_modules.blendshape_evaluation import BlendshapeEvaluation
from lightning_modules.losses import masked_weighted_mse
from lightning_modules.optimization import optimizer_config

CONDITION_KEYS = ("audio", "style", "style_mask", "emotion", "level", "init")


class EmoDiff(L.LightningModule):
    """Trains the denoiser on dataset windows; samples with DDIM/DDPM and classifier-free guidance from EMA weights.

    Blendshapes are diffused in a per-coefficient standardised space (corpus statistics, kept in the checkpoint).
    With `autoregressive`, a random share of training windows gets its first `context_frames` frames as known
    context, so generation can continue a sequence window by window; without it every window starts afresh
    from the initial expression (the paper's ablation).
    """

    def __init__(self, denoiser: nn.Module, optimizer: partial, scheduler: partial | None = None, *,
                 diffusion_steps: int = 500, schedule: str = "cosine", prediction: str = "x0",
                 cond_drop_prob: float = 0.1, style_clip_drop_prob: float = 0.3, autoregressive: bool = True, context_frames: int = 10,
                 context_prob: float = 0.5, mouth_weight: float = 2.0, velocity_weight: float = 0.5,
                 ema_decay: float = 0.999, sample_steps: int = 20, guidance_scale: float = 1.5,
                 val_sample_batches: int = 4, generation_window: int = 64) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["denoiser", "optimizer", "scheduler"], logger=False)
        self.denoiser = denoiser
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.ema = AveragedModel(denoiser, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
        self.ema.requires_grad_(False)
        self.schedule = make_schedule(schedule, diffusion_steps)
        weights = torch.ones(NUM_BLENDSHAPES)
        weights[MOUTH_INDICES] = mouth_weight
        self.register_buffer("coefficient_weights", weights, persistent=False)
        self.register_buffer("bs_mean", torch.zeros(NUM_BLENDSHAPES))
        self.register_buffer("bs_std", torch.ones(NUM_BLENDSHAPES))
        self.val_metrics = BlendshapeEvaluation("val")
        self.test_metrics = BlendshapeEvaluation("test")

    # --- data space ----------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and getattr(datamodule, "blendshape_mean", None) is not None:
            self.bs_mean.copy_(torch.as_tensor(datamodule.blendshape_mean))
            self.bs_std.copy_(torch.as_tensor(datamodule.blendshape_std))

    def normalize(self, blendshapes: torch.Tensor) -> torch.Tensor:
        return (blendshapes - self.bs_mean) / self.bs_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.bs_std + self.bs_mean).clamp(0.0, 1.0)

    def _schedule(self):
        if self.schedule.device != self.device:
            self.schedule = self.schedule.to(self.device)
        return self.schedule

    # --- conditions ----------------------------------------------------------------------------------------
    def conditions(self, batch: dict[str, torch.Tensor], context: torch.Tensor | None = None,
                   context_mask: torch.Tensor | None = None, drop: torch.Tensor | None = None) -> dict:
        b, frames = batch["audio"].shape[:2]
        cond = {k: batch[k] for k in CONDITION_KEYS}
        cond["init"] = self.normalize(batch["init"])
        cond["style"] = self.normalize(batch["style"]) * batch["style_mask"][..., None]
        cond["context"] = context if context is not None else batch["audio"].new_zeros(b, frames, NUM_BLENDSHAPES)
        cond["context_mask"] = (context_mask if context_mask is not None
                                else torch.zeros(b, frames, dtype=torch.bool, device=self.device))
        cond["drop"] = drop if drop is not None else torch.zeros(b, dtype=torch.bool, device=self.device)
        return cond

    def _training_context(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, frames = x0.shape[:2]
        mask = torch.zeros(b, frames, dtype=torch.bool, device=x0.device)
        if self.hparams.autoregressive:
            use = torch.rand(b, device=x0.device) < self.hparams.context_prob
            mask[use, : self.hparams.context_frames] = True
        return x0 * mask[..., None], mask

    # --- training ------------------------------------------------------------------------------------------
    def diffusion_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        schedule = self._schedule()
        x0 = self.normalize(batch["blendshapes"])
        b = x0.shape[0]
        t = torch.randint(0, schedule.num_steps, (b,), device=self.device)
        noise = torch.randn_like(x0)
        x_t = q_sample(schedule, x0, t, noise)
        context, context_mask = self._training_context(x0)
        drop = torch.rand(b, device=self.device) < self.hparams.cond_drop_prob
        # Without its style clip now and then, so that a label alone (no reference clip) also conditions well.
        no_clip = torch.rand(b, device=self.device) < self.hparams.style_clip_drop_prob
        batch = dict(batch, style_mask=batch["style_mask"] & ~no_clip[:, None])
        out = self.denoiser(x_t, t, self.conditions(batch, context, context_mask, drop))
        frames = batch["mask"] & ~context_mask
        kind = self.hparams.prediction
        target = prediction_target(kind, schedule, x0, t, noise)
        diffusion = masked_weighted_mse(out, target, frames, self.coefficient_weights)
        x0_hat = predicted_x0(kind, schedule, x_t, t, out)
        pairs = batch["mask"][:, 1:] & batch["mask"][:, :-1]
        velocity = masked_weighted_mse(x0_hat[:, 1:] - x0_hat[:, :-1], x0[:, 1:] - x0[:, :-1], pairs,
                                       self.coefficient_weights)
        return {"loss": diffusion + self.hparams.velocity_weight * velocity, "diffusion": diffusion,
                "velocity": velocity}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.diffusion_loss(batch)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=batch["audio"].shape[0])
        return losses["loss"]

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if getattr(self.trainer.strategy, "zero_stage_3", False):
            # ZeRO-3 keeps only a shard of large parameters between steps: gather them, or the EMA sees nothing.
            import deepspeed

            params = [*self.ema.parameters(), *self.denoiser.parameters()]
            with deepspeed.zero.GatheredParameters(params, modifier_rank=0):
                self.ema.update_parameters(self.denoiser)
            return
        self.ema.update_parameters(self.denoiser)

    # --- sampling ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_window(self, cond: dict[str, torch.Tensor], *, steps: int | None = None,
                      guidance_scale: float | None = None, generator: torch.Generator | None = None,
                      use_ema: bool = True) -> torch.Tensor:
        """One window in standardised space; `steps=0` runs full DDPM, otherwise DDIM with that many steps."""
        net = self.ema.module if use_ema else self.denoiser
        scale = self.hparams.guidance_scale if guidance_scale is None else guidance_scale
        null = dict(cond, drop=torch.ones_like(cond["drop"]))
        b, frames = cond["audio"].shape[:2]
        shape = (b, frames, NUM_BLENDSHAPES)
        fixed = (cond["context_mask"][..., None].expand(shape), cond["context"])

        def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return cfg_denoise(net, x_t, t, cond, null, scale)

        steps = self.hparams.sample_steps if steps is None else steps
        kind, schedule = self.hparams.prediction, self._schedule()
        if steps == 0:
            return ddpm_sample(denoise, schedule, shape, kind, generator=generator, x0_fixed=fixed)
        return ddim_sample(denoise, schedule, shape, kind, steps, generator=generator, x0_fixed=fixed)

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor], *, steps: int | None = None,
                 guidance_scale: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Blendshapes (B, T, 52) for audio of any length T: overlapping windows, each continuing the previous
        one's last `context_frames` frames (autoregressive), or independent windows from the initial expression."""
        frames = batch["audio"].shape[1]
        window, context_frames = self.hparams.generation_window, self.hparams.context_frames
        autoregressive = self.hparams.autoregressive
        hop = window - context_frames if autoregressive else window
        out = batch["audio"].new_zeros(batch["audio"].shape[0], frames, NUM_BLENDSHAPES)
        start = 0
        while True:
            stop = min(start + window, frames)
            piece = dict(batch, audio=batch["audio"][:, start:stop])
            context = context_mask = None
            if autoregressive and start > 0:
                context = out.new_zeros(out.shape[0], stop - start, NUM_BLENDSHAPES)
                context[:, :context_frames] = out[:, start:start + context_frames]
                context_mask = torch.zeros(out.shape[0], stop - start, dtype=torch.bool, device=out.device)
                context_mask[:, :context_frames] = True
                piece["init"] = self.denormalize(out[:, start])
            cond = self.conditions(piece, context, context_mask)
            out[:, start:stop] = self.sample_window(cond, steps=steps, guidance_scale=guidance_scale,
                                                    generator=generator)
            if stop == frames:
                break
            start += hop
        return self.denormalize(out)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.generate(batch)

    # --- evaluation ----------------------------------------------------------------------------------------
    def _evaluate(self, batch: dict[str, Any], batch_idx: int, stage: str, metrics: BlendshapeEvaluation) -> None:
        b = batch["audio"].shape[0]
        self.log(f"{stage}/loss", self.diffusion_loss(batch)["loss"], batch_size=b, sync_dist=True)
        if stage == "val" and batch_idx >= self.hparams.val_sample_batches:
            return
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        metrics.update(self.generate(batch, generator=generator), batch)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test", self.test_metrics)

    def on_validation_epoch_end(self) -> None:
        self.val_metrics.log_epoch(self)

    def on_test_epoch_end(self) -> None:
        self.test_metrics.log_epoch(self)

    def configure_optimizers(self) -> dict[str, Any]:
        return optimizer_config("EmoDiff", self.optimizer_factory, self.scheduler_factory, self.denoiser.parameters())
