"""Blendshape-space metrics (torchmetrics, streaming and DDP-synced)."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from datamodules.arkit import MOUTH_INDICES


class MouthError(Metric):
    """Mean absolute error over the 27 jaw/mouth coefficients on valid (unpadded) frames, in [0, 1] units."""

    is_differentiable = True
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.register_buffer("mouth_index", torch.tensor(MOUTH_INDICES), persistent=False)
        self.add_state("abs_error", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """preds, target: (B, T, 52); mask: (B, T) True on real frames."""
        if preds.shape != target.shape:
            raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} differ")
        diff = (preds.index_select(-1, self.mouth_index) - target.index_select(-1, self.mouth_index)).abs()
        if mask is not None:
            diff = diff[mask.bool()]
        self.abs_error += diff.double().sum()
        self.count += diff.numel()

    def compute(self) -> torch.Tensor:
        return (self.abs_error / self.count.clamp(min=1)).float()


class EmotionAccuracy(Metric):
    """Share of sequences a frozen emotion classifier assigns to the asked emotion, and its mean confidence."""

    higher_is_better = True
    full_state_update = False

    def __init__(self, classifier: torch.nn.Module, **kwargs) -> None:
        super().__init__(**kwargs)
        self.classifier = classifier.eval().requires_grad_(False)
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("confidence", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, blendshapes: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> None:
        with torch.no_grad():
            probabilities = self.classifier(blendshapes, mask).softmax(-1)
        self.correct += (probabilities.argmax(-1) == target).sum()
        self.confidence += probabilities.gather(1, target[:, None]).double().sum()
        self.total += target.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        total = self.total.clamp(min=1)
        return {"accuracy": self.correct.float() / total, "confidence": (self.confidence / total).float()}
