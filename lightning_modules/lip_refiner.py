"""Lip refinement: recalibrates the jaw/mouth coefficients of an emotional blendshape sequence to the audio."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import hydra
import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from lightning_modules.blendshape_evaluation import BlendshapeEvaluation, evaluate_long_audio
from lightning_modules.mouth_perturbation import perturb_mouth
from lightning_modules.networks.lip_refiner import LipRefinement
from lightning_modules.optimization import optimizer_config
from lightning_modules.emotion_classifier import BlendshapeEmotionClassifier
from lightning_modules.trained_model import load_trained_model

SOURCES = ("perturbed", "emodiff", "mixed")
REFINEMENT = "refinement."
"""Where a checkpoint keeps the LipRefinement; checkpoints from before it kept its `net.`, `bs_mean`, `bs_std` at the
top level (renamed on load by `current_state`)."""


def current_state(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's state dict in the current layout, whichever layout it was saved in."""
    moved = ("net.", "bs_mean", "bs_std")
    return {(REFINEMENT + name if name.startswith(moved) else name): value for name, value in state_dict.items()}


class LipRefiner(L.LightningModule):
    """Learns to map a sequence with a wrong mouth (perturbed ground truth, or EmoDiff samples) to the true mouth.

    Losses: mouth accuracy (MSE of the 27 coefficients, standardised), smoothness (their frame-to-frame velocity
    against the truth's), and emotion preservation: the frozen blendshape emotion classifier must give the refined
    sequence the distribution it gives the input (KL), so the refiner fixes the lips without changing the emotion.
    The frozen EmoDiff and classifier are helpers, not part of this module's weights or checkpoints. What it trains,
    `refinement` (a LipRefinement: the network, its statistics, `refine`), is what inference loads.
    """

    def __init__(self, net: nn.Module, optimizer: partial | None = None, scheduler: partial | None = None, *,
                 source: str = "mixed", emodiff_run: str | None = None, emodiff_prob: float = 0.3,
                 emodiff_steps: int = 5, emotion_classifier: str | None = None, mouth_weight: float = 1.0,
                 smooth_weight: float = 0.5, emotion_weight: float = 0.1, val_sample_batches: int = 4) -> None:
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if source != "perturbed" and not emodiff_run:
            raise ValueError(f"source={source!r} needs emodiff_run (an EmoDiff run directory or checkpoint)")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.refinement = LipRefinement(net)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self._frozen: dict[str, nn.Module] = {}  # EmoDiff and the emotion judge, kept out of the state dict
        self.metrics = nn.ModuleDict({f"{stage}{part}": BlendshapeEvaluation(f"{stage}{part}")
                                      for stage in ("val", "test") for part in ("", "/source")})

    # --- inference model of a checkpoint (see lightning_modules/trained_model.py) ------------------------------
    @staticmethod
    def inference_model(model_cfg: DictConfig) -> LipRefinement:
        """An untrained LipRefinement shaped as the run's `model_cfg` says: no optimizer, no frozen helpers."""
        return LipRefinement(hydra.utils.instantiate(model_cfg.net))

    @staticmethod
    def inference_state(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name.removeprefix(REFINEMENT): value for name, value in current_state(state_dict).items()
                if name.startswith(REFINEMENT)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = current_state(checkpoint["state_dict"])

    @property
    def net(self) -> nn.Module:
        return self.refinement.net

    # --- frozen helpers and data space --------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and getattr(datamodule, "blendshape_mean", None) is not None:
            self.refinement.bs_mean.copy_(torch.as_tensor(datamodule.blendshape_mean))
            self.refinement.bs_std.copy_(torch.as_tensor(datamodule.blendshape_std))
        if self.hparams.emodiff_run and "emodiff" not in self._frozen:
            self._frozen["emodiff"] = self._load_emodiff(datamodule)
        if self.hparams.emotion_classifier and "judge" not in self._frozen:
            self._frozen["judge"] = BlendshapeEmotionClassifier.load_frozen(self.hparams.emotion_classifier)

    def _load_emodiff(self, datamodule: Any) -> nn.Module:
        trained = load_trained_model(self.hparams.emodiff_run)
        if datamodule is not None and getattr(datamodule, "audio_mean", None) is not None:
            if not torch.allclose(torch.as_tensor(datamodule.audio_mean), torch.as_tensor(trained.audio_mean),
                                  atol=1e-4):
                raise ValueError(f"{trained.checkpoint}: EmoDiff was trained with other audio statistics than this "
                                 "corpus gives (another corpus, split or feature setting?)")
        return trained.model.requires_grad_(False)

    def frozen(self, name: str) -> nn.Module | None:
        model = self._frozen.get(name)
        return None if model is None else model.to(self.device).eval()

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.refinement.normalize(x)

    # --- refinement -----------------------------------------------------------------------------------------
    def refine(self, source: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.refinement.refine(source, audio, mask)

    def evaluation_source(self, batch: dict[str, torch.Tensor], seed: int) -> torch.Tensor:
        """What evaluation refines, seeded: EmoDiff's samples when an EmoDiff run is given, else a corrupted mouth."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        if self.hparams.emodiff_run:
            return self.emodiff_source(batch, generator)
        return perturb_mouth(batch["blendshapes"], batch["mask"], generator)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The refined (B, T, 52) sequence of a batch, as in testing (the prediction every module's forward gives)."""
        return self.refine(self.evaluation_source(batch, 0), batch["audio"], batch["mask"])

    @torch.no_grad()
    def emodiff_source(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None) -> torch.Tensor:
        return self.frozen("emodiff").generate(batch, steps=self.hparams.emodiff_steps, generator=generator)

    def make_source(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None) -> torch.Tensor:
        """The sequence to refine: ground truth with a corrupted mouth, EmoDiff samples, or a per-batch mix."""
        use_emodiff = {"perturbed": False, "emodiff": True}.get(self.hparams.source)
        if use_emodiff is None:
            use_emodiff = bool(torch.rand((), generator=generator, device=self.device) < self.hparams.emodiff_prob)
        if use_emodiff:
            return self.emodiff_source(batch, generator)
        return perturb_mouth(batch["blendshapes"], batch["mask"], generator)

    # --- training -------------------------------------------------------------------------------------------
    def losses(self, source: torch.Tensor, refined: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict:
        mask = batch["mask"]
        mouth_index = self.refinement.mouth_index
        pred = self.normalize(refined).index_select(-1, mouth_index)
        target = self.normalize(batch["blendshapes"]).index_select(-1, mouth_index)
        m = mask[..., None].to(pred.dtype)
        mouth = ((pred - target) ** 2 * m).sum() / (m.sum() * pred.shape[-1]).clamp(min=1)
        pairs = (mask[:, 1:] & mask[:, :-1])[..., None].to(pred.dtype)
        squared = (pred.diff(dim=1) - target.diff(dim=1)) ** 2 * pairs
        velocity = squared.sum() / (pairs.sum() * pred.shape[-1]).clamp(min=1)
        losses = {"mouth": mouth, "smooth": velocity}
        judge = self.frozen("judge")
        total = self.hparams.mouth_weight * mouth + self.hparams.smooth_weight * velocity
        if judge is not None and self.hparams.emotion_weight > 0:
            with torch.no_grad():
                kept = judge(source, mask).log_softmax(-1)
            now = judge(refined, mask).log_softmax(-1)
            losses["emotion"] = F.kl_div(now, kept, log_target=True, reduction="batchmean")
            total = total + self.hparams.emotion_weight * losses["emotion"]
        losses["loss"] = total
        return losses

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        source = self.make_source(batch)
        losses = self.losses(source, self.refine(source, batch["audio"], batch["mask"]), batch)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=True, batch_size=batch["audio"].shape[0])
        return losses["loss"]

    # --- evaluation -----------------------------------------------------------------------------------------
    def _evaluate(self, batch: dict[str, Any], batch_idx: int, stage: str) -> None:
        if stage == "val" and batch_idx >= self.hparams.val_sample_batches:
            return
        source = self.evaluation_source(batch, batch_idx)
        refined = self.refine(source, batch["audio"], batch["mask"])
        self.log(f"{stage}/loss", self.losses(source, refined, batch)["loss"], batch_size=batch["audio"].shape[0],
                 sync_dist=True)
        second_source = second_refined = None
        if stage == "test":  # another draw of the source (seeded apart from every batch's), refined
            second_source = self.evaluation_source(batch, 1_000_003 + batch_idx)
            second_refined = self.refine(second_source, batch["audio"], batch["mask"])
        judge = self.frozen("judge")
        for part, sequence, second in (("", refined, second_refined), ("/source", source, second_source)):
            self.metrics[f"{stage}{part}"].update(sequence, batch, judge=judge, second_sample=second)

    def source_windows(self) -> tuple[int, int]:
        """(window, hop) of the source's generation: EmoDiff's, else (perturbed ground truth) the data window's."""
        generator = self.frozen("emodiff")  # the trained run's EmoDiffGenerator
        if generator is None:
            window = int(self.trainer.datamodule.hparams.window)
            return window, window
        window = generator.generation_window
        return window, window - generator.context_frames if generator.autoregressive else window

    def _log_epoch(self, stage: str) -> None:
        if stage == "test":
            sources: dict[str, torch.Tensor] = {}

            def predict(part: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
                if "source" not in sources:
                    sources["source"] = self.evaluation_source(batch, 0)
                source = sources["source"]
                return source if part else self.refine(source, batch["audio"], batch["mask"])

            window, hop = self.source_windows()
            for part in ("/source", ""):
                evaluate_long_audio(self, self.metrics[f"{stage}{part}"], lambda b, part=part: predict(part, b),
                                    window, hop)
        for part in ("", "/source"):
            self.metrics[f"{stage}{part}"].log_epoch(self)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> dict[str, Any]:
        return optimizer_config("LipRefiner", self.optimizer_factory, self.scheduler_factory, self.net.parameters())
