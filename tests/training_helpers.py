"""Helpers shared by the training tests: compose the train config, score the mean-pose predictor."""

from __future__ import annotations

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from experiments.train import CONFIG_DIR
from metrics.blendshape import AudioMouthSync, MouthError


def compose_train(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides, return_hydra_config=False)


def mean_pose_scores(datamodule, split: str = "test") -> dict[str, float]:
    """The mean-pose predictor (the training split's average frame) scored like a model on `split`."""
    train_frames = np.concatenate([c.blendshapes for c in datamodule.datasets["train"].clips])
    mean_pose = torch.from_numpy(train_frames.mean(0))
    error, sync = MouthError(), AudioMouthSync()
    loader = datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
    for batch in loader:
        pred = mean_pose.expand_as(batch["blendshapes"])
        error.update(pred, batch["blendshapes"], batch["mask"])
        sync.update(pred, batch["loudness"], batch["mask"])
    return {"mouth_error": float(error.compute()), "sync": float(sync.compute()["sync"])}


def ground_truth_sync(datamodule, split: str = "test") -> float:
    """Audio-mouth sync of the corpus's own tracks: what a perfect model scores (not 1: mouths are not loudness)."""
    sync = AudioMouthSync()
    loader = datamodule.test_dataloader() if split == "test" else datamodule.val_dataloader()
    for batch in loader:
        sync.update(batch["blendshapes"], batch["loudness"], batch["mask"])
    return float(sync.compute()["sync"])


def mean_pose_mouth_error(datamodule, split: str = "test") -> float:
    return mean_pose_scores(datamodule, split)["mouth_error"]
