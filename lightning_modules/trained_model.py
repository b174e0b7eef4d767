"""Load a trained blendshape model for inference from its run directory: the checkpoint, its config and its data
statistics.

The model is the inference module the run's LightningModule trains (EmoDiff's EmoDiffGenerator, the lip refiner's
LipRefinement), built from the run's config and the checkpoint's weights: no optimizer, no training module. A
LightningModule offers one through two static methods: `inference_model(model_cfg)` (the untrained module) and
`inference_state(state_dict)` (its weights in a checkpoint of the LightningModule)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from datamodules.features import FeatureConfig
from dtl_foundation.run_layout import RUN_CHECKPOINTS, RunLayout
from datamodules import config_resolvers  # noqa: F401  (registers the config resolvers)


@dataclass
class TrainedModel:
    model: torch.nn.Module  # the inference module, in eval mode
    cfg: DictConfig
    checkpoint: Path
    features: FeatureConfig
    fps: float
    audio_mean: np.ndarray
    audio_std: np.ndarray


def resolve_checkpoint(path: str | Path) -> tuple[Path, Path]:
    """A run directory (best.ckpt, else last.ckpt) or a checkpoint inside one -> (checkpoint, resolved config)."""
    path = Path(path)
    if path.is_dir() and (path / "latest").is_file():  # before the run-directory case: it is a directory too
        raise FileNotFoundError(f"{path}: a DeepSpeed ZeRO checkpoint directory; convert it first: dtl export {path}")
    if path.is_dir():
        run = RunLayout(path)
        checkpoint = run.inference_checkpoint()
        if checkpoint is None:
            if any((run.checkpoints / n).is_dir() for n in RUN_CHECKPOINTS):
                raise FileNotFoundError(f"{path}: its checkpoints are DeepSpeed ZeRO directories; convert one "
                                        f"first: dtl export {path}")
            raise FileNotFoundError(f"{path}: no checkpoints/best.ckpt or checkpoints/last.ckpt")
    elif path.is_file():
        checkpoint, run = path, RunLayout.of_checkpoint(path)
    else:
        raise FileNotFoundError(f"{path}: no such run directory or checkpoint")
    configs = run.configs()
    if not configs:
        raise FileNotFoundError(f"{run.root}: no meta/attempt_*/config.yaml beside the checkpoint "
                                "(is this a dtl run directory?)")
    return checkpoint, configs[-1]


def inference_model(model_cfg: DictConfig, state_dict: dict[str, torch.Tensor], checkpoint: Path) -> torch.nn.Module:
    """The inference module of the LightningModule `model_cfg` names, with its weights from `state_dict`."""
    trainer_class = hydra.utils.get_class(model_cfg._target_)
    if not hasattr(trainer_class, "inference_model"):
        raise ValueError(f"{checkpoint}: a {trainer_class.__name__} run has no inference model to generate with "
                         "(EmoDiff and lip-refiner runs have)")
    model = trainer_class.inference_model(model_cfg)
    model.load_state_dict(trainer_class.inference_state(state_dict))
    return model


def load_trained_model(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    checkpoint, config_path = resolve_checkpoint(path)
    cfg = OmegaConf.load(config_path)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = inference_model(cfg.model, state["state_dict"], checkpoint)
    datamodule_state = state.get("BlendshapeDataModule", {})
    if datamodule_state.get("audio_mean") is None:
        raise ValueError(f"{checkpoint}: holds no audio normalisation statistics (not a blendshape model run?)")
    features = FeatureConfig(**{k: v for k, v in OmegaConf.to_container(cfg.data.features).items() if k != "_target_"})
    return TrainedModel(model=model.to(device).eval(), cfg=cfg, checkpoint=checkpoint, features=features,
                        fps=float(cfg.data.fps), audio_mean=datamodule_state["audio_mean"].numpy(),
                        audio_std=datamodule_state["audio_std"].numpy())
