"""OmegaConf resolvers the configs use (registered once, on import)."""

from __future__ import annotations

import os

from omegaconf import DictConfig, OmegaConf


def feature_dim(features: DictConfig) -> int:
    """Channels per blendshape frame of a `data.features` config node."""
    from datamodules.features import FeatureConfig  # librosa and torch: `dtl submit` composes configs without them

    settings = {k: v for k, v in OmegaConf.to_container(features, resolve=True).items() if k != "_target_"}
    return FeatureConfig(**settings).dim


def openmp_threads(default: int) -> int:
    """The OpenMP thread count exported where the config is composed (OMP_NUM_THREADS, a positive integer),
    else `default`: a Slurm job asks for as many CPUs as its threads will use."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else int(default)


def register() -> None:
    if not OmegaConf.has_resolver("dtl.feature_dim"):
        OmegaConf.register_new_resolver("dtl.feature_dim", feature_dim)
    if not OmegaConf.has_resolver("dtl.openmp_threads"):
        OmegaConf.register_new_resolver("dtl.openmp_threads", openmp_threads)


register()
