"""The 68 dlib landmarks as points on a FaceRig's mesh, found once by rendering the rig and detecting its face.

The rig is rendered in a set of calibration expressions and head turns; dlib's landmarks are detected on each.
Every landmark is then tied to the mesh vertex whose projections follow that landmark best over the whole set
(up to a constant shift in its depth plane, which absorbs where dlib puts a point on a smooth surface). So
the landmark follows every blendshape linearly: p(c) = p0 + c @ D. The calibration keeps the renderer's camera
(view-projection matrix, head pivot, image size), so the fit projects points exactly as `rendering.gl_renderer`
draws them, and an identity basis: how the landmarks move when the default rig's proportions change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from dtl_foundation.arkit import INDEX, NUM_BLENDSHAPES
from dtl_foundation.atomic_files import atomic_save_npz
from dtl_foundation.media.face_detect import FaceLandmarker
from rendering.default_rig import default_cache_dir, default_rig
from rendering.face_params import FaceParams
from rendering.gl_renderer import FaceRenderer

log = logging.getLogger(__name__)
CALIBRATION_VERSION = 3
NUM_LANDMARKS = 68
EYELIDS = (37, 38, 40, 41, 43, 44, 46, 47)  # on the lid margins; every other point lies on the skin
# proportions of the default rig varied to build the identity basis (the colours do not move landmarks)
IDENTITY_PARAMS = ("head_width", "head_height", "jaw_width", "nose_length", "nose_width", "eye_spacing",
                   "lip_fullness")
IDENTITY_STEP = 0.1  # FaceParams scale step of each basis direction

# (coefficients by name, (yaw, pitch, roll) degrees): the expressions and turns the landmarks are matched over
CALIBRATION_POSES: tuple[tuple[dict[str, float], tuple[float, float, float]], ...] = (
    ({}, (0, 0, 0)), ({"jawOpen": 0.2}, (0, 0, 0)), ({"jawOpen": 0.45}, (0, 0, 0)), ({"jawOpen": 0.7}, (0, 0, 0)),
    ({"mouthSmileLeft": 0.7, "mouthSmileRight": 0.7}, (0, 0, 0)),
    ({"mouthFrownLeft": 0.6, "mouthFrownRight": 0.6}, (0, 0, 0)),
    ({"mouthPucker": 0.7, "jawOpen": 0.1}, (0, 0, 0)), ({"mouthFunnel": 0.6, "jawOpen": 0.25}, (0, 0, 0)),
    ({"mouthStretchLeft": 0.5, "mouthStretchRight": 0.5, "jawOpen": 0.3}, (0, 0, 0)),
    ({"mouthLeft": 0.6}, (0, 0, 0)), ({"jawLeft": 0.5, "jawOpen": 0.3}, (0, 0, 0)),
    ({"browInnerUp": 0.7, "browOuterUpLeft": 0.6, "browOuterUpRight": 0.6}, (0, 0, 0)),
    ({"browDownLeft": 0.7, "browDownRight": 0.7}, (0, 0, 0)),
    ({"eyeBlinkLeft": 0.6, "eyeBlinkRight": 0.6}, (0, 0, 0)), ({"eyeWideLeft": 0.7, "eyeWideRight": 0.7}, (0, 0, 0)),
    ({}, (8, 0, 0)), ({}, (-8, 0, 0)), ({}, (0, 8, 0)), ({"jawOpen": 0.4}, (6, -5, 3)),
)


class CalibrationError(RuntimeError):
    """The rig could not be calibrated (no face found on its rendering, or landmarks off the mesh)."""


@dataclass(frozen=True)
class RigLandmarks:
    """68 landmarks on a rig's mesh plus the camera they were found with.

    vertex (68,) the mesh vertex of each landmark and offset (68, 3) its constant shift; neutral (68, 3) rest
    positions and deltas (52, 68, 3) per-blendshape displacements; identity (K, 68, 3) displacements per
    IDENTITY_STEP of each IDENTITY_PARAMS proportion; viewproj (4, 4), pivot (3,), eye (3,) and size (pixels)
    of the camera; detected (68, 2) dlib's landmarks on the neutral rendering; residual_px (68,) the RMS distance over
    the calibration renderings between dlib's landmark and the model's.
    """

    vertex: np.ndarray
    offset: np.ndarray
    neutral: np.ndarray
    deltas: np.ndarray
    identity: np.ndarray
    viewproj: np.ndarray
    pivot: np.ndarray
    eye: np.ndarray
    size: int
    detected: np.ndarray
    residual_px: np.ndarray

    def save(self, path: str | os.PathLike) -> None:
        atomic_save_npz(path, **{k: np.asarray(v) for k, v in asdict(self).items()},
                        version=np.array(CALIBRATION_VERSION))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RigLandmarks":
        with np.load(path, allow_pickle=False) as data:
            if "version" not in data.files or int(data["version"]) != CALIBRATION_VERSION:
                raise CalibrationError(f"{path}: not a version-{CALIBRATION_VERSION} rig calibration")
            values = {k: data[k] for k in cls.__dataclass_fields__}
        values["size"] = int(values["size"])
        return cls(**values)

    def observability(self) -> np.ndarray:
        """(52,) how far (metres, RMS over landmarks) each blendshape at 1 moves the 68 landmarks."""
        return np.sqrt((self.deltas ** 2).sum(-1).mean(-1))


def surface_masks(rig) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (V,) masks of the skin (the largest connected surface: not eyeballs, teeth or the mouth cavity)
    and of the eyelids (the other surfaces that the eyeBlink shapes move; the skin itself if there are none)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    tris = rig.triangles
    rows = np.concatenate([tris[:, 0], tris[:, 1], tris[:, 2]])
    cols = np.concatenate([tris[:, 1], tris[:, 2], tris[:, 0]])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(rig.num_vertices,) * 2)
    _, labels = connected_components(graph, directed=False)
    skin = labels == np.bincount(labels).argmax()
    blink = np.abs(rig.deltas[[INDEX["eyeBlinkLeft"], INDEX["eyeBlinkRight"]]]).max(axis=(0, 2)) > 0
    lids = np.isin(labels, np.unique(labels[blink & ~skin]))
    return skin, (lids if lids.any() else skin)


def unproject(pixels: np.ndarray, points: np.ndarray, viewproj: np.ndarray, size: int) -> np.ndarray:
    """(N, 3) points on the camera rays through `pixels` (N, 2), at the clip-space depth of `points` (N, 3)."""
    clip = (viewproj @ np.c_[points, np.ones(len(points))].T).T
    ndc = np.stack([pixels[:, 0] / size * 2 - 1, 1 - pixels[:, 1] / size * 2, clip[:, 2] / clip[:, 3]], -1)
    world = (np.linalg.inv(viewproj) @ np.c_[ndc, np.ones(len(ndc))].T).T
    return world[:, :3] / world[:, 3:4]


def _render_calibration_set(rig, renderer, landmarker) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per calibration pose: detected (P, 68, 2) landmarks (NaN where dlib found no face), coefficients (P, 52),
    poses (P, 6)."""
    coeffs = np.zeros((len(CALIBRATION_POSES), NUM_BLENDSHAPES), np.float32)
    poses = np.zeros((len(CALIBRATION_POSES), 6))
    for k, (shapes, angles) in enumerate(CALIBRATION_POSES):
        for name, value in shapes.items():
            coeffs[k, INDEX[name]] = value
        poses[k, :3] = angles
    frames = renderer.render(coeffs, poses).numpy()
    detected = np.full((len(frames), NUM_LANDMARKS, 2), np.nan)
    for k, frame in enumerate(frames):
        face = landmarker.detect(frame)
        if face is not None:
            detected[k] = face.landmarks
    if np.isnan(detected[0]).any():
        raise CalibrationError(f"{rig.name}: dlib finds no face on the neutral rendering at {renderer.size} px")
    return detected, coeffs, poses


def calibrate(rig, size: int = 384, landmarker=None, identity_params=None, cache_dir=None,
              search_radius: float = 0.05) -> RigLandmarks:
    """Tie each dlib landmark to the rig vertex that follows it best over CALIBRATION_POSES.

    Candidates are the skin vertices (the lid vertices for eyelid points) facing the camera within
    `search_radius` x size pixels of the neutral detection; the score is the spread of (projection - detection)
    over the renderings, plus a small pull towards vertices that sit under the neutral detection.
    `identity_params` (a FaceParams) builds the identity basis from default rigs around those proportions;
    None leaves it empty (a rig not made by `default_rig`).
    """
    import torch

    landmarker = landmarker or FaceLandmarker(upsample=0)
    skin, lids = surface_masks(rig)
    with FaceRenderer(rig, size, supersample=2) as renderer:
        detected, coeffs, poses = _render_calibration_set(rig, renderer, landmarker)
        posed = rig.apply(torch.from_numpy(coeffs)).numpy().astype(np.float64)  # (P, V, 3)
        projected = np.stack([renderer.project(posed[k], poses[k]) for k in range(len(posed))])  # (P, V, 2)
        normals = rig.vertex_normals(torch.from_numpy(posed[0]).float()).numpy()
        facing = ((renderer.eye[None] - posed[0]) * normals).sum(-1) > 0
        vertex = np.zeros(NUM_LANDMARKS, np.int64)
        residual = np.zeros(NUM_LANDMARKS)
        shift = np.zeros((NUM_LANDMARKS, 2))
        valid = ~np.isnan(detected[:, :, 0])  # (P, 68)
        for i in range(NUM_LANDMARKS):
            surface = (lids if i in EYELIDS else skin) & facing
            near = np.linalg.norm(projected[0] - detected[0, i], axis=-1) < search_radius * size
            candidates = np.nonzero(surface & near)[0]
            if len(candidates) == 0:
                raise CalibrationError(f"{rig.name}: no mesh vertex near dlib landmark {i} at {size} px")
            seen = valid[:, i]
            error = projected[seen][:, candidates] - detected[seen, i][:, None]  # (P', C, 2)
            mean = error.mean(0)
            spread = ((error - mean) ** 2).sum(-1).mean(0)
            best = int(np.argmin(spread + 0.05 * (mean ** 2).sum(-1)))
            vertex[i], shift[i] = candidates[best], mean[best]
            residual[i] = float(np.sqrt(spread[best]))
        viewproj, pivot, eye = renderer.viewproj.copy(), renderer.pivot.copy(), renderer.eye.copy()
    rest = rig.vertices[vertex].astype(np.float64)
    # the landmark rides on its vertex, shifted within the vertex's depth plane onto where dlib puts it on average
    offset = unproject(renderer.project(rest) - shift, rest, viewproj, size) - rest
    neutral = rest + offset
    deltas = rig.deltas[:, vertex].astype(np.float64)
    identity = (_identity_basis(identity_params, vertex, offset, neutral, cache_dir)
                if identity_params is not None else np.zeros((0, NUM_LANDMARKS, 3)))
    log.info("calibrated %s at %d px: median landmark residual %.2f px over %d renderings", rig.name,
             size, float(np.median(residual)), len(detected))
    return RigLandmarks(vertex=vertex, offset=offset, neutral=neutral, deltas=deltas, identity=identity,
                        viewproj=viewproj, pivot=pivot, eye=eye, size=int(size), detected=detected[0],
                        residual_px=residual)


def _identity_basis(params, vertex, offset, neutral, cache_dir) -> np.ndarray:
    """(K, 68, 3) landmark displacement per +IDENTITY_STEP of each proportion (finite differences of default rigs)."""
    basis = []
    for name in IDENTITY_PARAMS:
        value = getattr(params, name)
        step = IDENTITY_STEP if value + IDENTITY_STEP <= 1.3 else -IDENTITY_STEP
        moved = default_rig(replace(params, **{name: value + step}), cache_dir=cache_dir)
        if moved.num_vertices <= int(vertex.max()):
            raise CalibrationError(f"default rig with {name}={value + step} has another topology")
        basis.append((moved.vertices[vertex].astype(np.float64) + offset - neutral) / step * IDENTITY_STEP)
    return np.stack(basis)


def calibration_path(size: int, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the default rig's calibration at `size` pixels is cached."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = hashlib.sha256(json.dumps({"v": CALIBRATION_VERSION, "params": asdict(FaceParams()), "size": size,
                                     "poses": CALIBRATION_POSES}, sort_keys=True).encode()).hexdigest()[:16]
    return folder / f"rig_landmarks-v{CALIBRATION_VERSION}-{key}.npz"


def default_calibration(size: int = 384, cache_dir: str | os.PathLike | None = None) -> RigLandmarks:
    """The calibration of the default rig (FaceParams()), cached beside the rig cache after the first build."""
    path = calibration_path(size, cache_dir)
    if path.is_file():
        try:
            return RigLandmarks.load(path)
        except (OSError, KeyError, ValueError, CalibrationError) as e:
            log.warning("recalibrating: %s (%s)", path, e)
    params = FaceParams()
    calibration = calibrate(default_rig(params, cache_dir=cache_dir), size=size, identity_params=params,
                            cache_dir=cache_dir)
    try:
        calibration.save(path)
    except OSError as e:
        log.warning("could not cache the rig calibration at %s (%s)", path, e)
    return calibration
