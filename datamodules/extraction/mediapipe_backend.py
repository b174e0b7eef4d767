"""MediaPipe FaceLandmarker backend: its 52 blendshape scores per frame, mapped to ARKit order by name.

The model file `face_landmarker.task` is the user's to provide (Google publishes it under Apache-2.0 at
MODEL_URL); its sha256 is checked against the digest the user gives, since a file of another version would
give other scores. MediaPipe names its categories alphabetically with `_neutral` first and has no tongueOut
(dtl_foundation.arkit.MEDIAPIPE_NAMES): the scores are reordered by name, never by position, tongueOut = 0.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dtl_foundation.arkit import NUM_BLENDSHAPES, reorder
from dtl_foundation.weights import sha256_of

MODEL_URL = ("https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/"
             "face_landmarker.task")
MODEL_ENV = "DTL_MEDIAPIPE_TASK"
SHA256_ENV = "DTL_MEDIAPIPE_TASK_SHA256"


class MediaPipeUnavailableError(RuntimeError):
    """mediapipe is not installed, or the model file is missing or not the expected one."""


def scores_to_arkit(names: list[str], scores: np.ndarray) -> np.ndarray:
    """(..., 52) ARKit-order coefficients from MediaPipe's (..., len(names)) scores and category names."""
    return np.clip(reorder(np.asarray(scores, dtype=np.float32), list(names), fill_missing=0.0), 0.0, 1.0)


def resolve_model(path: str | os.PathLike | None, sha256: str | None) -> Path:
    """The checked model file: `path` (or $DTL_MEDIAPIPE_TASK) whose sha256 equals `sha256` (or the env's)."""
    raw = path or os.environ.get(MODEL_ENV)
    how = (f"Download it from {MODEL_URL} (Apache-2.0), then pass --model PATH --model-sha256 "
           f"$(sha256sum PATH | cut -c1-64), or set {MODEL_ENV} and {SHA256_ENV}.")
    if not raw:
        raise MediaPipeUnavailableError(f"the mediapipe backend needs a face_landmarker.task model file. {how}")
    model = Path(raw)
    if not model.is_file():
        raise MediaPipeUnavailableError(f"{model}: no such model file. {how}")
    expected = (sha256 or os.environ.get(SHA256_ENV) or "").strip().lower()
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise MediaPipeUnavailableError(
            f"{model}: give the expected sha256 (64 hex digits) of the model file, so that a changed or truncated "
            f"file is not used silently. {how}")
    actual = sha256_of(model)
    if actual != expected:
        raise MediaPipeUnavailableError(f"{model}: sha256 {actual} differs from the expected {expected}; "
                                        f"re-download it from {MODEL_URL}")
    return model


def import_mediapipe():
    try:
        import mediapipe
        from mediapipe.tasks.python import vision  # noqa: F401  (the tasks API is checked here, used later)
    except ImportError as e:
        raise MediaPipeUnavailableError(
            "the mediapipe backend needs the `mediapipe` package (pip install -e '.[mediapipe]'; it has wheels for "
            "CPython on Linux x86-64, macOS and Windows). Use --backend fit otherwise: it needs only dlib.") from e
    return mediapipe


class MediaPipeBackend:
    """Blendshapes and head rotation per frame from MediaPipe's FaceLandmarker in VIDEO mode."""

    def __init__(self, model: str | os.PathLike | None = None, sha256: str | None = None) -> None:
        self.model = resolve_model(model, sha256)
        self.mp = import_mediapipe()

    def extract(self, frames: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """coeffs (T, 52), poses (T, 6) (yaw, pitch, roll degrees; translation as MediaPipe gives it, in its
        centimetre-scale units / 100), face (T,) bool for (T, H, W, 3) uint8 RGB frames."""
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(self.model)),
                                               running_mode=vision.RunningMode.VIDEO, num_faces=1,
                                               output_face_blendshapes=True,
                                               output_facial_transformation_matrixes=True)
        coeffs = np.zeros((len(frames), NUM_BLENDSHAPES), np.float32)
        poses = np.zeros((len(frames), 6))
        face = np.zeros(len(frames), bool)
        with vision.FaceLandmarker.create_from_options(options) as landmarker:
            for t, frame in enumerate(frames):
                image = self.mp.Image(image_format=self.mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
                result = landmarker.detect_for_video(image, int(round(t * 1000 / fps)))
                if not result.face_blendshapes:
                    continue
                categories = result.face_blendshapes[0]
                coeffs[t] = scores_to_arkit([c.category_name for c in categories],
                                            np.array([c.score for c in categories]))
                if result.facial_transformation_matrixes:
                    poses[t] = matrix_to_pose(np.asarray(result.facial_transformation_matrixes[0]))
                face[t] = True
        return coeffs, poses, face


def matrix_to_pose(matrix: np.ndarray) -> np.ndarray:
    """(6,) yaw, pitch, roll (degrees, R = Ry Rx Rz as rendering.gl_renderer) and translation / 100 of a 4x4."""
    R = matrix[:3, :3] / np.linalg.norm(matrix[:3, 0])
    pitch = np.degrees(np.arcsin(np.clip(-R[1, 2], -1.0, 1.0)))
    yaw = np.degrees(np.arctan2(R[0, 2], R[2, 2]))
    roll = np.degrees(np.arctan2(R[1, 0], R[1, 1]))
    return np.array([yaw, pitch, roll, *(matrix[:3, 3] / 100.0)])
