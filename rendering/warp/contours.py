"""The warp's control points on a face: dlib's 68 landmarks plus denser lip and eyelid contours between them.

68 points leave the lips and lids too coarse to open a mouth or close an eye cleanly, so every segment of the
outer lip, the inner lip and the eyelids gets SUBDIVISIONS - 1 extra points. On a portrait they are interpolated
between its detected landmarks (`interpolation_matrix`); on the rig they ride on mesh vertices of their own
(rendering/warp/rig_points.py), so they follow the mesh's curvature rather than straight chords. Upper and lower
contours are listed corner to corner with the same number of points, so point k of one faces point k of the
other (`facing_pairs`): the gap between them must not turn negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_LANDMARKS = 68
SUBDIVISIONS = 3

# corner-to-corner polylines of iBUG landmarks; each (upper, lower) pair shares its two corners
INNER_LIP = ((60, 61, 62, 63, 64), (60, 67, 66, 65, 64))
OUTER_LIP = ((48, 49, 50, 51, 52, 53, 54), (48, 59, 58, 57, 56, 55, 54))
LEFT_LIDS = ((36, 37, 38, 39), (36, 41, 40, 39))
RIGHT_LIDS = ((42, 43, 44, 45), (42, 47, 46, 45))
CONTOUR_PAIRS = {"inner_lip": INNER_LIP, "outer_lip": OUTER_LIP, "left_lids": LEFT_LIDS, "right_lids": RIGHT_LIDS}
EYELID_CONTOURS = ("left_lids", "right_lids")


@dataclass(frozen=True)
class DensePoint:
    """An extra control point on the segment from landmark `a` to landmark `b`, at fraction `t` of the way."""

    contour: str
    side: str  # "upper" or "lower"
    a: int
    b: int
    t: float


def _polyline_points(contour: str, side: str, polyline: tuple[int, ...]) -> list[DensePoint]:
    return [DensePoint(contour, side, a, b, k / SUBDIVISIONS)
            for a, b in zip(polyline[:-1], polyline[1:]) for k in range(1, SUBDIVISIONS)]


def dense_points() -> list[DensePoint]:
    """The extra points, contour by contour, upper side before lower side."""
    points = []
    for name, (upper, lower) in CONTOUR_PAIRS.items():
        points += _polyline_points(name, "upper", upper) + _polyline_points(name, "lower", lower)
    return points


DENSE = tuple(dense_points())
NUM_POINTS = NUM_LANDMARKS + len(DENSE)


def interpolation_matrix() -> np.ndarray:
    """(NUM_POINTS, 68): all control points as linear combinations of the 68 landmarks (identity on the first 68)."""
    matrix = np.zeros((NUM_POINTS, NUM_LANDMARKS))
    matrix[np.arange(NUM_LANDMARKS), np.arange(NUM_LANDMARKS)] = 1
    for row, point in enumerate(DENSE, start=NUM_LANDMARKS):
        matrix[row, point.a] = 1 - point.t
        matrix[row, point.b] = point.t
    return matrix


def contour_indices(contour: str, side: str) -> np.ndarray:
    """Control-point indices of one side of a contour, corner to corner, landmarks and dense points in order."""
    polyline = CONTOUR_PAIRS[contour][0 if side == "upper" else 1]
    dense = {(p.a, p.b, p.t): NUM_LANDMARKS + i for i, p in enumerate(DENSE) if p.contour == contour
             and p.side == side}
    indices = [polyline[0]]
    for a, b in zip(polyline[:-1], polyline[1:]):
        indices += [dense[(a, b, k / SUBDIVISIONS)] for k in range(1, SUBDIVISIONS)] + [b]
    return np.array(indices)


def facing_pairs(contour: str) -> tuple[np.ndarray, np.ndarray]:
    """Indices (upper, lower) of the points that face each other across a contour, corners left out."""
    upper, lower = contour_indices(contour, "upper"), contour_indices(contour, "lower")
    return upper[1:-1], lower[1:-1]


def inner_lip_polygon() -> np.ndarray:
    """Indices of the inner lip as a closed polygon: the upper side corner to corner, then the lower side back."""
    return np.concatenate([contour_indices("inner_lip", "upper"), contour_indices("inner_lip", "lower")[::-1][1:-1]])
