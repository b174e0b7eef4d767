"""torchmetrics classes for blendshape, sync, image and identity evaluation."""

from metrics.blendshape import MouthError

__all__ = ["MouthError"]
