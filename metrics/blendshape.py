"""Blendshape-space metrics (torchmetrics, streaming and DDP-synced)."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from dtl_foundation.arkit import INDEX, MOUTH_INDICES, indices


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
    """Share of sequences a frozen emotion classifier assigns to the asked emotion, and its mean confidence.

    Without a classifier (one kept elsewhere, e.g. out of a module's checkpoint) feed `update_probabilities`.
    """

    higher_is_better = True
    full_state_update = False

    def __init__(self, classifier: torch.nn.Module | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.classifier = classifier.eval().requires_grad_(False) if classifier is not None else None
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("confidence", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, blendshapes: torch.Tensor | None, mask: torch.Tensor | None, target: torch.Tensor,
               probabilities: torch.Tensor | None = None) -> None:
        """Judge (B, T, 52) sequences asked for emotions `target` (B,); or count given judge `probabilities`."""
        if probabilities is None:
            if self.classifier is None:
                raise ValueError("EmotionAccuracy was built without a classifier: use update_probabilities")
            with torch.no_grad():
                probabilities = self.classifier(blendshapes, mask).softmax(-1)
        self.correct += (probabilities.argmax(-1) == target).sum()
        self.confidence += probabilities.gather(1, target[:, None]).double().sum()
        self.total += target.numel()

    def update_probabilities(self, probabilities: torch.Tensor, target: torch.Tensor) -> None:
        """probabilities: (B, emotions) of a judge kept elsewhere; target: (B,) asked emotions."""
        self.update(None, None, target, probabilities=probabilities)

    def compute(self) -> dict[str, torch.Tensor]:
        total = self.total.clamp(min=1)
        return {"accuracy": self.correct.float() / total, "confidence": (self.confidence / total).float()}


def lagged_correlations(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, max_lag: int,
                        min_frames: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Pearson r of x[t] with y[t - lag] for lag in [-max_lag, max_lag] per sequence, (B, 2L+1), and where it counts.

    x, y: (B, T); mask: (B, T). A positive lag means x follows y (the mouth moves after the sound). Pairs count
    where both frames are real. A sequence counts at a lag with >= `min_frames` pairs and a varying y; a constant
    x there gives r = 0 (no co-variation), not a missing value.
    """
    t = x.shape[1]
    rs, counts = [], []
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            xs, ys, ms = x[:, lag:], y[:, : t - lag], mask[:, lag:] & mask[:, : t - lag]
        else:
            xs, ys, ms = x[:, :lag], y[:, -lag:], mask[:, :lag] & mask[:, -lag:]
        m = ms.to(x.dtype)
        n = m.sum(1)
        dx = (xs - ((xs * m).sum(1) / n.clamp(min=1))[:, None]) * m
        dy = (ys - ((ys * m).sum(1) / n.clamp(min=1))[:, None]) * m
        var_x, var_y = (dx * dx).sum(1), (dy * dy).sum(1)
        r = (dx * dy).sum(1) / (var_x * var_y).sqrt().clamp(min=1e-20)
        rs.append(torch.where(var_x > 1e-12, r, torch.zeros_like(r)))
        counts.append((n >= min_frames) & (var_y > 1e-12))
    return torch.stack(rs, 1), torch.stack(counts, 1)


class AudioMouthSync(Metric):
    """Audio-mouth sync: mean per-sequence Pearson r of mouth aperture (jawOpen) with audio loudness, at the lag
    within +-`max_lag` frames where the mean is best; compute() returns that r and the lag (frames, mouth after
    audio when positive). A constant mouth (the mean pose) scores 0."""

    higher_is_better = True
    full_state_update = False

    def __init__(self, max_lag: int = 5, aperture: str = "jawOpen", **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_lag, self.aperture_index = max_lag, INDEX[aperture]
        self.add_state("r_sum", default=torch.zeros(2 * max_lag + 1, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sequences", default=torch.zeros(2 * max_lag + 1, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, blendshapes: torch.Tensor, loudness: torch.Tensor, mask: torch.Tensor) -> None:
        """blendshapes: (B, T, 52); loudness: (B, T) in dB; mask: (B, T) True on real frames."""
        aperture = blendshapes[..., self.aperture_index].double()
        r, counts = lagged_correlations(aperture, loudness.double(), mask.bool(), self.max_lag)
        self.r_sum += (r * counts).sum(0)
        self.sequences += counts.sum(0)

    def curve(self) -> torch.Tensor:
        """Mean r per lag, lags -max_lag..max_lag."""
        return (self.r_sum / self.sequences.clamp(min=1)).float()

    def compute(self) -> dict[str, torch.Tensor]:
        curve = self.curve()
        best = int(curve.argmax())
        return {"sync": curve[best], "lag": torch.tensor(float(best - self.max_lag))}


class UpperFaceDynamicsDeviation(Metric):
    """FDD (FaceFormer/CodeTalker): mean over upper-face coefficients of |std over time of the prediction - that
    of the ground truth|, averaged over sequences; how far the brows/eyes/cheeks move unlike the truth."""

    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.register_buffer("upper_index", torch.tensor(indices("upper_face")), persistent=False)
        self.add_state("deviation", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sequences", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    @staticmethod
    def _masked_std(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask[..., None].to(x.dtype)
        n = m.sum(1).clamp(min=1)
        mean = (x * m).sum(1) / n
        return (((x - mean[:, None]) ** 2 * m).sum(1) / n).sqrt()

    def update(self, preds: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        """preds, target: (B, T, 52); mask: (B, T). Sequences with fewer than 2 real frames are left out."""
        keep = mask.sum(1) >= 2
        p, t = preds[keep].index_select(-1, self.upper_index), target[keep].index_select(-1, self.upper_index)
        m = mask[keep].bool()
        deviation = (self._masked_std(p.double(), m) - self._masked_std(t.double(), m)).abs().mean(-1)
        self.deviation += deviation.sum()
        self.sequences += deviation.numel()

    def compute(self) -> torch.Tensor:
        return (self.deviation / self.sequences.clamp(min=1)).float()


class SampleDiversity(Metric):
    """Mean absolute difference between samples drawn for the same condition (every pair of K samples), over
    real frames and all 52 coefficients (or a group): 0 for a deterministic model."""

    higher_is_better = True
    full_state_update = False

    def __init__(self, group: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        index = indices(group) if group else list(range(len(INDEX)))
        self.register_buffer("index", torch.tensor(index), persistent=False)
        self.add_state("distance", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pairs", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, samples: torch.Tensor, mask: torch.Tensor) -> None:
        """samples: (K, B, T, 52), K >= 2 draws for the same B conditions; mask: (B, T)."""
        if samples.ndim != 4 or samples.shape[0] < 2:
            raise ValueError(f"expected (K >= 2, B, T, 52) samples, got {tuple(samples.shape)}")
        x = samples.index_select(-1, self.index).double()
        m = mask.bool()
        k = x.shape[0]
        for i in range(k):
            for j in range(i + 1, k):
                diff = (x[i] - x[j]).abs()[m]  # (frames, C)
                self.distance += diff.mean(-1).sum()
                self.pairs += diff.shape[0]

    def compute(self) -> torch.Tensor:
        return (self.distance / self.pairs.clamp(min=1)).float()
