"""The warp's control points on the default rig: where they are in 3D for any blendshapes, and on the avatar frame.

The 68 landmarks come from the rig calibration (datamodules/extraction/rig_landmarks.py: each rides on a mesh
vertex, p(c) = p0 + c @ D). Each dense contour point (rendering/warp/contours.py) gets its own vertex the same
way: among the lip (skin) or lid vertices facing the camera near the point's place at rest, the one that sits
under it at rest and, second, moves with it when the jaw opens, the lips smile or the eyes blink; a constant
shift in its depth plane puts it exactly on the contour at rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dtl_foundation.arkit import INDEX, NUM_BLENDSHAPES
from rendering.gl_renderer import as_poses
from rendering.rig import FaceRig
from rendering.rig_landmarks import RigLandmarks, surface_masks, unproject
from rendering.warp.contours import (
    DENSE,
    EYELID_CONTOURS,
    NUM_LANDMARKS,
    NUM_POINTS,
    interpolation_matrix,
)

# expressions the dense vertices must move along with (score weight MOTION_WEIGHT against the rest position)
MATCH_EXPRESSIONS = ({"jawOpen": 0.6}, {"mouthSmileLeft": 0.6, "mouthSmileRight": 0.6},
                     {"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0}, {"mouthPucker": 0.6})
MOTION_WEIGHT = 0.1
SEARCH_RADIUS = 0.05  # of the frame side


@dataclass(frozen=True)
class RigPoints:
    """rest (N, 3) control points of the rig at rest and deltas (52, N, 3) their motion per blendshape at 1."""

    rest: np.ndarray
    deltas: np.ndarray

    def positions(self, coeffs: np.ndarray) -> np.ndarray:
        """(T, N, 3) control points for (T, 52) coefficients."""
        coeffs = np.asarray(coeffs, dtype=np.float64).reshape(-1, NUM_BLENDSHAPES)
        return self.rest[None] + np.einsum("tc,cnd->tnd", coeffs, self.deltas)

    def project(self, coeffs: np.ndarray, renderer, poses: np.ndarray | None = None) -> np.ndarray:
        """(T, N, 2) pixel positions on `renderer`'s frames (a FaceRenderer of the same rig) under (T, 6) poses."""
        points = self.positions(coeffs)
        models = renderer.model_matrices(as_poses(poses, len(points)))  # (T, 4, 4)
        homogeneous = np.concatenate([points, np.ones(points.shape[:2] + (1,))], -1)
        clip = np.einsum("ij,tjk,tnk->tni", renderer.viewproj, models, homogeneous)
        ndc = clip[..., :2] / clip[..., 3:4]
        return np.stack([(ndc[..., 0] + 1) / 2 * renderer.size, (1 - ndc[..., 1]) / 2 * renderer.size], -1)


def _expression(shapes: dict[str, float]) -> np.ndarray:
    coeffs = np.zeros(NUM_BLENDSHAPES)
    for name, value in shapes.items():
        coeffs[INDEX[name]] = value
    return coeffs


def rig_points(rig: FaceRig, calibration: RigLandmarks, renderer) -> RigPoints:
    """All control points of `rig` (the one `calibration` was made on), dense ones matched through `renderer`."""
    skin, lids = surface_masks(rig)
    normals = rig.vertex_normals(torch.from_numpy(rig.vertices)).numpy()
    facing = ((renderer.eye[None] - rig.vertices) * normals).sum(-1) > 0
    interpolate = interpolation_matrix()
    expressions = [np.zeros(NUM_BLENDSHAPES)] + [_expression(e) for e in MATCH_EXPRESSIONS]
    landmarks = RigPoints(rest=calibration.neutral, deltas=calibration.deltas)
    # where the dense points should be in each expression: on the chords between the rig's own landmarks
    targets = np.einsum("pl,eld->epd", interpolate[NUM_LANDMARKS:],
                        landmarks.project(np.stack(expressions), renderer))
    vertex_tracks = np.stack([renderer.project(rig.vertices + np.tensordot(c, rig.deltas, 1)) for c in expressions])
    rest = np.zeros((NUM_POINTS, 3))
    deltas = np.zeros((NUM_BLENDSHAPES, NUM_POINTS, 3))
    rest[:NUM_LANDMARKS], deltas[:, :NUM_LANDMARKS] = calibration.neutral, calibration.deltas
    for k, point in enumerate(DENSE):
        surface = (lids if point.contour in EYELID_CONTOURS else skin) & facing
        near = np.linalg.norm(vertex_tracks[0] - targets[0, k], axis=-1) < SEARCH_RADIUS * renderer.size
        candidates = np.nonzero(surface & near)[0]
        if len(candidates) == 0:
            raise ValueError(f"{rig.name}: no mesh vertex near the {point.contour} {point.side} contour point "
                             f"between landmarks {point.a} and {point.b}")
        error = ((vertex_tracks[:, candidates] - targets[:, k, None]) ** 2).sum(-1)  # (E, C)
        best = candidates[np.argmin(error[0] + MOTION_WEIGHT * error[1:].sum(0))]
        vertex = rig.vertices[best].astype(np.float64)
        rest[NUM_LANDMARKS + k] = unproject(targets[0, k][None], vertex[None], renderer.viewproj, renderer.size)[0]
        deltas[:, NUM_LANDMARKS + k] = rig.deltas[:, best]
    return RigPoints(rest=rest, deltas=deltas)
