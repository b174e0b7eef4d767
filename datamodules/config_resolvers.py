"""OmegaConf resolvers the configs use (registered once, on import)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


def feature_dim(features: DictConfig) -> int:
    """Channels per blendshape frame of a `data.features` config node."""
    from datamodules.features import FeatureConfig  # librosa and torch: `dtl submit` composes configs without them

    settings = {k: v for k, v in OmegaConf.to_container(features, resolve=True).items() if k != "_target_"}
    return FeatureConfig(**settings).dim


def register() -> None:
    if not OmegaConf.has_resolver("dtl.feature_dim"):
        OmegaConf.register_new_resolver("dtl.feature_dim", feature_dim)


register()
