"""The Hydra config folder and the training config as `dtl train` composes it (without importing torch)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from datamodules import config_resolvers  # noqa: F401  (registers the config resolvers)

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")


def compose_config(overrides: list[str]) -> DictConfig:
    """The training config for these overrides, as `dtl train` composes it."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)
