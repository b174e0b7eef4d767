"""Boundary continuity: does motion jump where a windowed generator starts a new window?

A generator that makes long sequences window by window (EmoDiff) can leave a seam at each window's first new
frame. The metric compares the mean |velocity| and |acceleration| (over all 52 coefficients) at those frames with
the same statistic inside windows, as a ratio (1 = a boundary moves like any other frame), and does the same for
the ground truth at the same positions, which shows what ratio real motion has there (about 1: the positions mean
nothing to it). Frames where separately recorded clips were joined (`joins`) are left out of both sets.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric

JUMP_TOLERANCE = 1.2
"""A ratio above this times the ground truth's marks a sequence discontinuous at its window boundaries."""

_PARTS = ("pred", "truth")
_STATS = ("velocity", "acceleration")
_WHERE = ("boundary", "inside")


def window_boundaries(frames: int, window: int, hop: int) -> list[int]:
    """The first new frame of every window after the first: windows start every `hop` frames and the first
    `window - hop` frames of each continue the previous one (its context), so frame start + (window - hop) is
    the first one the new window adds."""
    if not 0 < hop <= window:
        raise ValueError(f"hop must be in (0, window={window}], got {hop}")
    return list(range(window, frames, hop))


def _velocity_and_acceleration(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean |x_t - x_{t-1}| for t = 1..T-1 and mean |x_{t+1} - 2 x_t + x_{t-1}| for t = 1..T-2, each (B, ·)."""
    velocity = x.diff(dim=1)
    return velocity.abs().mean(-1), velocity.diff(dim=1).abs().mean(-1)


class BoundaryContinuity(Metric):
    """compute() gives `boundary_velocity_ratio`, `boundary_acceleration_ratio` (the prediction) and the same with
    `_truth` (the ground truth at the same frames). The velocity into frame t crosses a boundary when t is a
    window's first new frame; the acceleration at t when t or t + 1 is."""

    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for part in _PARTS:
            for stat in _STATS:
                for where in _WHERE:
                    self.add_state(f"{part}_{stat}_{where}_sum", default=torch.tensor(0.0, dtype=torch.float64),
                                   dist_reduce_fx="sum")
                    self.add_state(f"{part}_{stat}_{where}_count", default=torch.tensor(0, dtype=torch.long),
                                   dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, boundaries: torch.Tensor,
               joins: torch.Tensor | None = None) -> None:
        """preds, target: (B, T, 52); mask: (B, T) real frames; boundaries: (B, T) True at each window's first new
        frame; joins: (B, T) True at the first frame of each joined clip after the first (left out)."""
        if preds.shape != target.shape:
            raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} differ")
        mask, boundaries = mask.bool(), boundaries.bool()
        joins = torch.zeros_like(mask) if joins is None else joins.bool()
        # velocity into frame t (t >= 1), acceleration at t (1 <= t <= T-2)
        velocity_valid = mask[:, 1:] & mask[:, :-1] & ~joins[:, 1:]
        velocity_boundary = boundaries[:, 1:]
        acceleration_valid = mask[:, 2:] & mask[:, 1:-1] & mask[:, :-2] & ~joins[:, 1:-1] & ~joins[:, 2:]
        acceleration_boundary = boundaries[:, 1:-1] | boundaries[:, 2:]
        for part, x in zip(_PARTS, (preds, target)):
            velocity, acceleration = _velocity_and_acceleration(x.double())
            for stat, values, valid, at_boundary in (
                    ("velocity", velocity, velocity_valid, velocity_boundary),
                    ("acceleration", acceleration, acceleration_valid, acceleration_boundary)):
                for where, chosen in (("boundary", valid & at_boundary), ("inside", valid & ~at_boundary)):
                    setattr(self, f"{part}_{stat}_{where}_sum",
                            getattr(self, f"{part}_{stat}_{where}_sum") + values[chosen].sum())
                    setattr(self, f"{part}_{stat}_{where}_count",
                            getattr(self, f"{part}_{stat}_{where}_count") + chosen.sum())

    def _mean(self, part: str, stat: str, where: str) -> torch.Tensor:
        count = getattr(self, f"{part}_{stat}_{where}_count")
        if count == 0:
            raise ValueError(f"BoundaryContinuity: no {where} frames were seen (sequences shorter than a window?)")
        return getattr(self, f"{part}_{stat}_{where}_sum") / count

    def compute(self) -> dict[str, torch.Tensor]:
        out = {}
        for part in _PARTS:
            suffix = "" if part == "pred" else "_truth"
            for stat in _STATS:
                ratio = self._mean(part, stat, "boundary") / self._mean(part, stat, "inside").clamp(min=1e-12)
                out[f"boundary_{stat}_ratio{suffix}"] = ratio.float()
        return out


def discontinuous(result: dict[str, torch.Tensor], tolerance: float = JUMP_TOLERANCE) -> bool:
    """True when the prediction's velocity or acceleration ratio exceeds `tolerance` times the ground truth's."""
    return any(float(result[f"boundary_{stat}_ratio"]) > tolerance * float(result[f"boundary_{stat}_ratio_truth"])
               for stat in _STATS)
