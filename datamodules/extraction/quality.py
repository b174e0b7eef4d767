"""Per-clip quality of an extraction: fit residual, share of frames with a face, jitter; thresholds to exclude."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ClipQuality:
    """residual: mean landmark error over the inter-ocular distance (NaN for backends without a fit);
    face_share: frames with a face / frames; landmark_jitter: mean |second difference| of the detected
    landmarks over the inter-ocular distance (tracking noise); coeff_jitter: mean |second difference| of the
    coefficients (what a consumer of the track sees)."""

    frames: int
    residual: float
    face_share: float
    landmark_jitter: float
    coeff_jitter: float

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def second_difference(x: np.ndarray) -> np.ndarray:
    return x[2:] - 2 * x[1:-1] + x[:-2]


def clip_quality(coeffs: np.ndarray, face: np.ndarray, residual: float = float("nan"),
                 landmarks: np.ndarray | None = None, interocular: float | None = None) -> ClipQuality:
    """Quality of a (T, 52) track; `face` (T,) marks frames with a face, `landmarks` (T, 68, 2) the detections."""
    T = len(coeffs)
    coeff_jitter = float(np.abs(second_difference(coeffs)).mean()) if T >= 3 else 0.0
    landmark_jitter = float("nan")
    if landmarks is not None and interocular and T >= 3:
        steps = np.linalg.norm(second_difference(landmarks), axis=-1).mean(-1)
        landmark_jitter = float(np.nanmean(steps) / interocular) if np.isfinite(steps).any() else float("nan")
    return ClipQuality(frames=T, residual=float(residual), face_share=float(np.mean(face)) if T else 0.0,
                       landmark_jitter=landmark_jitter, coeff_jitter=coeff_jitter)


@dataclass(frozen=True)
class QualityThresholds:
    """A clip is below quality when its residual or a jitter is above, or its face share below, these."""

    max_residual: float = 0.06
    min_face_share: float = 0.9
    max_landmark_jitter: float = 0.05
    max_coeff_jitter: float = 0.08

    def failures(self, quality: ClipQuality) -> list[str]:
        """The reasons (empty when none) why a clip is below quality; a missing measure (NaN) never fails."""
        reasons = []
        checks = (("residual", quality.residual, self.max_residual, ">"),
                  ("face_share", quality.face_share, self.min_face_share, "<"),
                  ("landmark_jitter", quality.landmark_jitter, self.max_landmark_jitter, ">"),
                  ("coeff_jitter", quality.coeff_jitter, self.max_coeff_jitter, ">"))
        for name, value, limit, direction in checks:
            if value is None or math.isnan(value):
                continue
            if (value > limit) if direction == ">" else (value < limit):
                reasons.append(f"{name} {value:.4f} {direction} {limit:g}")
        return reasons
