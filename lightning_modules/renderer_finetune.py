"""Renderer fine-tuning: face-vid2vid trained as a GAN on (source, driving) frame pairs of talking videos.

Manual optimization with two optimizers (generator side: appearance, keypoints, head/expression, dense motion,
decoder; discriminator side: the multi-scale patch discriminator), so it runs under DDP, not Lightning's DeepSpeed
(one optimizer only; docs/renderer.md). bf16 comes from the trainer's precision (`trainer=gpu`).
Generator loss = l1 |G - driving| + perceptual (VGG19, optional) + GAN + feature matching + equivariance
+ keypoint prior + head pose (against the corpus's head pose tracks, where it has them) + deformation prior
(Wang et al. 2021, Sec. 3.3; weights as the public vox-256 config).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import lightning as L
import torch

from lightning_modules.networks.face_vid2vid.discriminator import MultiScaleDiscriminator
from lightning_modules.networks.face_vid2vid.equivariance import RandomWarp
from lightning_modules.networks.face_vid2vid.head_expression import (angles_from_rig, estimated_angles,
                                                                     transform_keypoints)
from lightning_modules.networks.face_vid2vid.model import FaceVid2Vid
from lightning_modules.networks.face_vid2vid.perceptual import VGG19Features, perceptual_loss
from lightning_modules.networks.face_vid2vid.training_losses import (GAN_MODES, ImagePyramid, deformation_prior_loss,
                                                                    discriminator_gan_loss, feature_matching_loss,
                                                                    generator_gan_loss, head_pose_loss,
                                                                    keypoint_prior_loss)
from lightning_modules.networks.face_vid2vid.checkpoint_layout import load_reference_checkpoint
from lightning_modules.trained_model import resolve_checkpoint

PERCEPTUAL = ("vgg19", "none")
DEFAULT_WEIGHTS = {"l1": 10.0, "perceptual": (10, 10, 10, 10, 10), "generator_gan": 1.0, "discriminator_gan": 1.0,
                   "feature_matching": (10, 10, 10, 10), "equivariance": 10.0, "keypoint": 10.0, "head_pose": 20.0,
                   "deformation": 5.0}


def plain(value):
    """OmegaConf containers (what Hydra passes) as plain lists and dicts."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    return OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value


def has_poses(batch: dict[str, torch.Tensor]) -> bool:
    return "has_pose" in batch and bool(batch["has_pose"].any())


def head_pose_error(out: dict, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean absolute degrees between the estimated driving pose and the batch's pose track (frames that have one)."""
    return head_pose_loss(estimated_angles(out["head_driving"]), angles_from_rig(batch["driving_pose"]),
                          batch["has_pose"])


class RendererFinetune(L.LightningModule):
    def __init__(self, model: FaceVid2Vid, discriminator: MultiScaleDiscriminator,
                 g_optimizer: partial | None = None, d_optimizer: partial | None = None, *,
                 perceptual: str = "vgg19", gan_mode: str = "hinge",
                 pyramid_scales: tuple[float, ...] = (1, 0.5, 0.25, 0.125),
                 loss_weights: dict | None = None, keypoint_distance: float = 0.1, keypoint_depth: float = 0.33,
                 warp: dict | None = None, gan_start_step: int = 0, gradient_clip: float | None = None,
                 pretrained: str | None = None) -> None:
        super().__init__()
        # Plain containers, so that checkpoints load with torch.load(weights_only=True).
        pyramid_scales, loss_weights, warp = (plain(pyramid_scales), plain(loss_weights), plain(warp))
        if perceptual not in PERCEPTUAL:
            raise ValueError(f"perceptual must be one of {PERCEPTUAL}, got {perceptual!r}")
        if gan_mode not in GAN_MODES:
            raise ValueError(f"gan_mode must be one of {GAN_MODES}, got {gan_mode!r}")
        self.save_hyperparameters(ignore=["model", "discriminator", "g_optimizer", "d_optimizer"], logger=False)
        self.automatic_optimization = False
        self.model, self.discriminator = model, discriminator
        self.g_optimizer_factory, self.d_optimizer_factory = g_optimizer, d_optimizer
        self.weights = {**DEFAULT_WEIGHTS, **(loss_weights or {})}
        self.pyramid = ImagePyramid(tuple(pyramid_scales))
        self.disc_pyramid = ImagePyramid(discriminator.scales)
        self.vgg = VGG19Features() if perceptual == "vgg19" else None
        self.warp = {"sigma_affine": 0.05, "sigma_tps": 0.005, "points_tps": 5, **(warp or {})}
        if pretrained:
            report = load_reference_checkpoint(pretrained, {"model": model, "discriminator": discriminator})
            print(f"{pretrained}: {report.summary()}")

    def state_dict(self, *args, **kwargs):
        # The frozen VGG is rebuilt from the torch cache, not stored in every checkpoint.
        state = super().state_dict(*args, **kwargs)
        return {k: v for k, v in state.items() if not k.startswith("vgg.")}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if self.vgg is not None:
            state_dict = {**state_dict, **{f"vgg.{k}": v for k, v in self.vgg.state_dict().items()}}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> dict:
        return self.model(source, driving)

    # --- losses -------------------------------------------------------------------------------------------
    def _gan_on(self) -> bool:
        return self.global_step >= self.hparams.gan_start_step and (
            self.weights["generator_gan"] > 0 or any(self.weights["feature_matching"]))

    def generator_losses(self, batch: dict[str, torch.Tensor], out: dict) -> dict[str, torch.Tensor]:
        w = self.weights
        driving, prediction = batch["driving"], out["prediction"]
        losses = {"l1": (prediction - driving).abs().mean()}
        real, fake = self.pyramid(driving), self.pyramid(prediction)
        if self.vgg is not None and any(w["perceptual"]):
            losses["perceptual"] = perceptual_loss(self.vgg, fake, real, tuple(w["perceptual"]))
        if self._gan_on():
            disc_real = self.discriminator(self.disc_pyramid(driving))
            disc_fake = self.discriminator(self.disc_pyramid(prediction))
            scales = self.discriminator.scales
            losses["generator_gan"] = generator_gan_loss([disc_fake[s][1] for s in scales], self.hparams.gan_mode)
            losses["feature_matching"] = feature_matching_loss([disc_real[s][0] for s in scales],
                                                               [disc_fake[s][0] for s in scales],
                                                               tuple(w["feature_matching"]))
        if w["equivariance"]:
            warp = RandomWarp(driving.shape[0], device=driving.device, **self.warp)
            warped_kp = transform_keypoints(out["kp_canonical"], self.model.he_estimator(warp.transform_frame(driving)))
            losses["equivariance"] = (out["kp_driving"][..., :2]
                                      - warp.warp_coordinates(warped_kp[..., :2])).abs().mean()
        if w["keypoint"]:
            losses["keypoint"] = keypoint_prior_loss(out["kp_driving"], self.hparams.keypoint_distance,
                                                     self.hparams.keypoint_depth)
        if w["head_pose"] and has_poses(batch):
            losses["head_pose"] = head_pose_error(out, batch)
        if w["deformation"]:
            losses["deformation"] = deformation_prior_loss(out["head_driving"]["exp"])
        scalar = {"l1": w["l1"], "perceptual": 1.0, "generator_gan": w["generator_gan"], "feature_matching": 1.0,
                  "equivariance": w["equivariance"], "keypoint": w["keypoint"], "head_pose": w["head_pose"],
                  "deformation": w["deformation"]}
        losses["loss"] = sum(scalar[k] * v for k, v in losses.items())
        return losses

    def discriminator_loss(self, batch: dict[str, torch.Tensor], prediction: torch.Tensor) -> torch.Tensor:
        real = self.discriminator(self.disc_pyramid(batch["driving"]))
        fake = self.discriminator(self.disc_pyramid(prediction.detach()))
        scales = self.discriminator.scales
        return self.weights["discriminator_gan"] * discriminator_gan_loss(
            [real[s][1] for s in scales], [fake[s][1] for s in scales], self.hparams.gan_mode)

    # --- training -----------------------------------------------------------------------------------------
    def on_train_epoch_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        train = getattr(datamodule, "datasets", {}).get("train") if datamodule is not None else None
        if hasattr(train, "epoch"):
            train.epoch = self.current_epoch  # new frame pairs every epoch

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        g_opt, d_opt = self.optimizers()
        out = self.model(batch["source"], batch["driving"])
        losses = self.generator_losses(batch, out)
        g_opt.zero_grad(set_to_none=True)
        self.manual_backward(losses["loss"])
        if self.hparams.gradient_clip:
            self.clip_gradients(g_opt, gradient_clip_val=self.hparams.gradient_clip, gradient_clip_algorithm="norm")
        g_opt.step()
        if self._gan_on() and self.weights["discriminator_gan"] > 0:
            d_loss = self.discriminator_loss(batch, out["prediction"])
            d_opt.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            d_opt.step()
            losses["discriminator"] = d_loss
        self.log_dict({f"train/{k}": v.detach() for k, v in losses.items()}, prog_bar=True,
                      batch_size=batch["source"].shape[0])

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> None:
        out = self.model(batch["source"], batch["driving"])
        prediction = out["prediction"].float()
        error = (prediction - batch["driving"]).abs().mean()
        mse = ((prediction - batch["driving"]) ** 2).mean().clamp(min=1e-10)
        self.log_dict({f"{stage}/l1": error, f"{stage}/psnr": -10 * torch.log10(mse)},
                      batch_size=batch["source"].shape[0], sync_dist=True)
        if has_poses(batch):
            self.log(f"{stage}/head_pose_error", head_pose_error(out, batch), batch_size=int(batch["has_pose"].sum()),
                     sync_dist=True)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self):
        if self.g_optimizer_factory is None or self.d_optimizer_factory is None:
            raise ValueError("RendererFinetune was built without g_optimizer/d_optimizer: it cannot be trained")
        return [self.g_optimizer_factory(params=self.model.parameters()),
                self.d_optimizer_factory(params=self.discriminator.parameters())]


@dataclass
class TrainedRenderer:
    """A fine-tuned renderer ready for motion transfer: the network and how its training videos were cropped."""

    model: FaceVid2Vid
    crop: str
    checkpoint: Path


def load_renderer(path: str | Path, device: str | torch.device = "cpu") -> TrainedRenderer:
    """The trained FaceVid2Vid of a renderer run directory (best.ckpt, else last.ckpt) or checkpoint, in eval mode."""
    import hydra
    from omegaconf import OmegaConf

    checkpoint, config_path = resolve_checkpoint(path)
    cfg = OmegaConf.load(config_path)
    if "RendererFinetune" not in str(cfg.model.get("_target_", "")):
        raise ValueError(f"{checkpoint}: not a renderer run (its model is {cfg.model.get('_target_')})")
    model: FaceVid2Vid = hydra.utils.instantiate(cfg.model.model)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
    return TrainedRenderer(model=model.to(device).eval(), crop=str(cfg.data.get("crop", "detect")),
                           checkpoint=checkpoint)
