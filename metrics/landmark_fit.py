"""The residual of fitting a generated face's landmarks onto the reference's by a similarity transform.

M-LMD and F-LMD remove only translation, so a face drawn a little larger or tilted scores as badly as a wrong mouth.
The fit residual says how much of the landmark difference no change of scale, rotation and position explains: per
frame, the root-mean-square distance over the 68 points after the least-squares similarity fit (Procrustes / Umeyama)
of the generated points onto the reference's, in units of the reference's inter-ocular distance (eye centres), then
the mean over frames. 0: the same face shape; a mouth open by a tenth of the eye distance adds ~0.1 x sqrt(20/68).
"""

from __future__ import annotations

import numpy as np

from dtl_foundation.media.face_detect import LEFT_EYE, NUM_LANDMARKS, RIGHT_EYE


def interocular_distance(landmarks: np.ndarray) -> np.ndarray:
    """(T,) distance between the two eye centres of (T, 68, 2) landmarks."""
    return np.linalg.norm(landmarks[:, LEFT_EYE].mean(1) - landmarks[:, RIGHT_EYE].mean(1), axis=-1)


def similarity_fit_residual(preds: np.ndarray, target: np.ndarray) -> float:
    """Mean over frames of the RMS point residual after fitting preds onto target by scale, rotation and shift,
    divided by target's inter-ocular distance."""
    preds, target = np.asarray(preds, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if preds.shape != target.shape or preds.ndim != 3 or preds.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected two (T, 68, 2) landmark arrays, got {preds.shape} and {target.shape}")
    p = preds - preds.mean(1, keepdims=True)
    q = target - target.mean(1, keepdims=True)
    residuals = []
    for source, goal in zip(p, q):
        u, singular, vt = np.linalg.svd(goal.T @ source)
        sign = np.sign(np.linalg.det(u @ vt)) or 1.0  # a reflection is not a head movement
        correction = np.diag([1.0, sign])
        rotation = u @ correction @ vt
        variance = (source**2).sum()
        scale = (singular * np.diag(correction)).sum() / variance if variance > 0 else 0.0
        fitted = scale * source @ rotation.T
        residuals.append(np.sqrt(((fitted - goal) ** 2).sum(-1).mean()))
    scale_of_face = np.maximum(interocular_distance(target), 1e-9)
    return float(np.mean(np.array(residuals) / scale_of_face))
