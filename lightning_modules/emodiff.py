"""EmoDiff training: the denoiser of an EmoDiffGenerator learns from dataset windows; EMA weights generate."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from functools import partial
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import DictConfig
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from dtl_foundation.arkit import MOUTH_INDICES, NUM_BLENDSHAPES
from dtl_foundation.mead import EMOTION_INDEX
from lightning_modules.blendshape_evaluation import BlendshapeEvaluation, evaluate_long_audio
from dtl_foundation.diffusion import predicted_x0, prediction_target, q_sample
from lightning_modules.emotion_classifier import BlendshapeEmotionClassifier
from lightning_modules.losses import masked_weighted_mse
from lightning_modules.networks.emodiff_generator import EmoDiffGenerator
from lightning_modules.optimization import optimizer_config

EMA_GENERATOR = "ema.module."
"""Where a checkpoint keeps the EMA generator, which validates and generates."""


class EmoDiff(L.LightningModule):
    """Trains `model` (an EmoDiffGenerator) and keeps its EMA copy `ema.module`, which validates and generates.

    Conditions are dropped independently during training so each request shape is in distribution: the label
    (`label_drop_prob`), the style clip (`style_clip_drop_prob`, so a label alone conditions well), the initial
    expression (`init_drop_prob`: otherwise the first frame, which already shows the emotion, lets the model
    ignore the label), and all emotion conditions at once (`cond_drop_prob`, the unconditional model of
    classifier-free guidance). With `autoregressive`, a random share of windows gets its first `context_frames`
    frames as known context, so generation can continue window by window (the paper's ablation switches it off).
    Every checkpoint carries the style bank of the training clips (see EmoDiffGenerator).
    Testing also logs emotion accuracy by the frozen `emotion_classifier` (when given), the diversity of two draws
    per batch, and boundary continuity on long audio (see BlendshapeEvaluation).
    """

    def __init__(self, denoiser: nn.Module, optimizer: partial, scheduler: partial | None = None, *,
                 diffusion_steps: int = 500, schedule: str = "cosine", prediction: str = "x0",
                 cond_drop_prob: float = 0.1, label_drop_prob: float = 0.1, style_clip_drop_prob: float = 0.5,
                 init_drop_prob: float = 0.5, autoregressive: bool = True, context_frames: int = 10,
                 context_prob: float = 0.5, mouth_weight: float = 2.0, velocity_weight: float = 0.5,
                 ema_decay: float = 0.999, sample_steps: int = 10, guidance_scale: float = 1.5,
                 val_sample_batches: int = 4, generation_window: int = 64, bank_exemplars: int = 4,
                 sampler: str = "dpmpp_2m", sampling_precision: str = "auto",
                 emotion_classifier: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["denoiser", "optimizer", "scheduler"], logger=False)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.model = EmoDiffGenerator.from_options(denoiser, self.hparams)  # its options, as loading passes them
        # Parameters only: the normalisation statistics and the style bank are copied, never averaged.
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=False)
        self.ema.requires_grad_(False)
        weights = torch.ones(NUM_BLENDSHAPES)
        weights[MOUTH_INDICES] = mouth_weight
        self.register_buffer("coefficient_weights", weights, persistent=False)
        self.val_metrics = BlendshapeEvaluation("val")
        self.test_metrics = BlendshapeEvaluation("test")
        self._judge: dict[str, nn.Module] = {}  # the frozen emotion judge, kept out of the state dict

    # --- inference model of a checkpoint (see lightning_modules/trained_model.py) ------------------------------
    @staticmethod
    def inference_model(model_cfg: DictConfig) -> EmoDiffGenerator:
        """An untrained generator shaped as the run's `model_cfg` says: no optimizer, no EMA, no training module."""
        return EmoDiffGenerator.from_options(hydra.utils.instantiate(model_cfg.denoiser), model_cfg)

    @staticmethod
    def inference_state(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The EMA generator's weights and buffers in a checkpoint of this module."""
        return {name.removeprefix(EMA_GENERATOR): value for name, value in state_dict.items()
                if name.startswith(EMA_GENERATOR)}

    @property
    def generator(self) -> EmoDiffGenerator:
        """The EMA generator: what validation, tests and `dtl generate` sample from."""
        return self.ema.module

    @property
    def denoiser(self) -> nn.Module:
        return self.model.denoiser

    def _copy_buffers_to_ema(self) -> None:
        for name, buffer in self.model.named_buffers():
            self.generator.get_buffer(name).copy_(buffer)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and getattr(datamodule, "blendshape_mean", None) is not None:
            self.model.bs_mean.copy_(torch.as_tensor(datamodule.blendshape_mean))
            self.model.bs_std.copy_(torch.as_tensor(datamodule.blendshape_std))
            self._copy_buffers_to_ema()
        if self.hparams.emotion_classifier and not self._judge:
            self._judge["judge"] = BlendshapeEmotionClassifier.load_frozen(self.hparams.emotion_classifier)

    def judge(self) -> nn.Module | None:
        return self._judge["judge"].to(self.device) if self._judge else None

    # --- inference API (delegates to the EMA generator) ---------------------------------------------------
    def normalize(self, blendshapes: torch.Tensor) -> torch.Tensor:
        return self.generator.normalize(blendshapes)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.generator.denormalize(x)

    def generate(self, batch: dict[str, torch.Tensor], **kwargs: Any) -> torch.Tensor:
        return self.generator.generate(batch, **kwargs)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.generate(batch)

    # --- training ------------------------------------------------------------------------------------------
    def _training_context(self, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, frames = x0.shape[:2]
        mask = torch.zeros(b, frames, dtype=torch.bool, device=x0.device)
        if self.hparams.autoregressive:
            use = torch.rand(b, device=x0.device) < self.hparams.context_prob
            mask[use, : self.hparams.context_frames] = True
        return x0 * mask[..., None], mask

    def _training_conditions(self, batch: dict[str, torch.Tensor], context: torch.Tensor,
                             context_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        b, device = batch["audio"].shape[0], self.device
        coin = lambda p: torch.rand(b, device=device) < p
        unconditional = coin(self.hparams.cond_drop_prob)
        mask = batch["style_mask"]
        model = self.model
        embedding = model.denoiser.encode_style(model.normalize(batch["style"]) * mask[..., None], mask)
        vector = model.denoiser.emotion_vector(
            batch["emotion"], batch["level"], embedding, drop_label=coin(self.hparams.label_drop_prob) | unconditional,
            drop_style=coin(self.hparams.style_clip_drop_prob) | unconditional | ~mask.any(1))
        return model.conditions(dict(batch, init_known=~coin(self.hparams.init_drop_prob)), vector, context,
                                context_mask)

    def diffusion_loss(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        schedule = self.model.noise_schedule()
        x0 = self.model.normalize(batch["blendshapes"])
        b = x0.shape[0]
        t = torch.randint(0, schedule.num_steps, (b,), device=self.device)
        noise = torch.randn_like(x0)
        x_t = q_sample(schedule, x0, t, noise)
        context, context_mask = self._training_context(x0)
        out = self.model.denoiser(x_t, t, self._training_conditions(batch, context, context_mask))
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

    def _gathered(self, params: list[nn.Parameter], modifier_rank: int | None = None):
        """ZeRO-3 keeps only a shard of large parameters between steps: gather them where they are used whole."""
        if not getattr(self.trainer.strategy, "zero_stage_3", False):
            return contextlib.nullcontext()
        import deepspeed  # optional: installed with the DeepSpeed extra only

        return deepspeed.zero.GatheredParameters(params, modifier_rank=modifier_rank)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        with self._gathered([*self.ema.parameters(), *self.model.parameters()], modifier_rank=0):
            self.ema.update_parameters(self.model)

    # --- style bank ----------------------------------------------------------------------------------------
    def fill_style_bank(self) -> None:
        """The EMA generator's style bank from the training clips (the first style window of each)."""
        dataset = self.trainer.datamodule.datasets["train"]
        frames = dataset.style_frames
        clips = [torch.from_numpy(c.blendshapes[:frames]) for c in dataset.clips]
        with self._gathered(list(self.generator.parameters())):
            self.generator.fill_style_bank(clips, [EMOTION_INDEX[c.emotion] for c in dataset.clips],
                                           [c.level for c in dataset.clips])
        for name in ("bank_mean", "bank_exemplar", "bank_count"):
            self.model.get_buffer(name).copy_(self.generator.get_buffer(name))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or "train" not in getattr(datamodule, "datasets", {}):
            return  # saved outside a fit (e.g. DeepSpeed's own engine): no training clips to bank
        self.fill_style_bank()
        state = checkpoint["state_dict"]
        for prefix, module in (("model.", self.model), (EMA_GENERATOR, self.generator)):
            for name in ("bank_mean", "bank_exemplar", "bank_count"):
                state[prefix + name] = module.get_buffer(name).detach().clone()

    # --- evaluation ----------------------------------------------------------------------------------------
    def _evaluate(self, batch: dict[str, Any], batch_idx: int, stage: str, metrics: BlendshapeEvaluation) -> None:
        b = batch["audio"].shape[0]
        self.log(f"{stage}/loss", self.diffusion_loss(batch)["loss"], batch_size=b, sync_dist=True)
        if stage == "val" and batch_idx >= self.hparams.val_sample_batches:
            return
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        sample = self.generate(batch, generator=generator)
        second = self.generate(batch, generator=generator) if stage == "test" else None
        metrics.update(sample, batch, judge=self.judge(), second_sample=second)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val", self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test", self.test_metrics)

    def on_validation_epoch_end(self) -> None:
        self.val_metrics.log_epoch(self)

    def on_test_epoch_end(self) -> None:
        generator = self.generator
        window = generator.generation_window
        hop = window - generator.context_frames if generator.autoregressive else window
        seeded = lambda: torch.Generator(device=self.device).manual_seed(0)
        evaluate_long_audio(self, self.test_metrics, lambda batch: self.generate(batch, generator=seeded()), window,
                            hop)
        self.test_metrics.log_epoch(self)

    def configure_optimizers(self) -> dict[str, Any]:
        return optimizer_config("EmoDiff", self.optimizer_factory, self.scheduler_factory, self.model.parameters())
