"""Faces and their 68 landmarks on RGB frames: dlib's HOG detector and the 68-point shape predictor.

The predictor file ships in the `face-recognition-models` sdist and is checked through dtl_foundation.weights
("dlib_shape_predictor_68"); dlib itself comes from `dlib-bin`. Landmarks follow the iBUG 300-W numbering
(0-16 jaw, 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 mouth), as (x, y) pixel coordinates.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch

from dtl_foundation.weights import resolve_weights

NUM_LANDMARKS = 68
MOUTH = slice(48, 68)
LEFT_EYE = slice(36, 42)  # the subject's right eye, on the image's left
RIGHT_EYE = slice(42, 48)
NOSE_TIP = 30
MOUTH_CORNERS = (48, 54)


def import_dlib() -> ModuleType:
    """The dlib module, or an ImportError that says which pip package provides it."""
    try:
        import dlib
    except ImportError as error:
        raise ImportError(
            "the face metrics need dlib: `pip install dlib-bin==20.0.1.post1` (prebuilt wheels; the `dlib` sdist "
            "compiles from source) and `pip install face-recognition-models==0.3.0` for the model files"
        ) from error
    return dlib


@functools.lru_cache(maxsize=None)
def _frontal_face_detector():
    return import_dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _shape_predictor(path: str):
    return import_dlib().shape_predictor(path)


def as_rgb_uint8(image: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W, 3) contiguous uint8 RGB from a (3, H, W) tensor (float in [0, 1] or uint8) or an (H, W, 3) array."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"expected a (3, H, W) RGB tensor, got shape {tuple(image.shape)}")
        if image.dtype == torch.uint8:
            image = image.permute(1, 2, 0).cpu().numpy()
        else:
            image = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.min() >= 0 and image.max() <= 1:
            image = (image * 255).round()
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


@dataclass(frozen=True)
class Face:
    """One detected face: box (left, top, right, bottom) in pixels, detector score, 68 (x, y) landmarks."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray


class FaceLandmarker:
    """The highest-scoring frontal face in an RGB frame and its 68 landmarks (None when dlib finds no face).

    upsample: how many times dlib doubles the image before detecting; 1 finds faces down to ~40 px, 0 to ~80 px.
    """

    def __init__(self, upsample: int = 1) -> None:
        self.upsample = upsample
        self._detector = _frontal_face_detector()
        self._predictor = _shape_predictor(str(resolve_weights("dlib_shape_predictor_68")))

    def detect(self, image: np.ndarray | torch.Tensor) -> Face | None:
        rgb = as_rgb_uint8(image)
        boxes, scores, _ = self._detector.run(rgb, self.upsample, 0.0)
        if not boxes:
            return None
        best = int(np.argmax(scores))
        box = boxes[best]
        return Face(
            box=(box.left(), box.top(), box.right(), box.bottom()),
            score=float(scores[best]),
            landmarks=self.landmarks(rgb, box),
        )

    def detect_all(self, image: np.ndarray | torch.Tensor) -> list[Face]:
        """Every frontal face dlib finds, with its landmarks, in the detector's order."""
        rgb = as_rgb_uint8(image)
        boxes, scores, _ = self._detector.run(rgb, self.upsample, 0.0)
        return [Face(box=(b.left(), b.top(), b.right(), b.bottom()), score=float(s), landmarks=self.landmarks(rgb, b))
                for b, s in zip(boxes, scores)]

    def landmarks(self, image: np.ndarray | torch.Tensor, box) -> np.ndarray:
        """(68, 2) float64 landmarks inside a dlib.rectangle or a (left, top, right, bottom) box."""
        if not hasattr(box, "left"):
            box = import_dlib().rectangle(*(int(round(v)) for v in box))
        shape = self._predictor(as_rgb_uint8(image), box)
        return np.array([(point.x, point.y) for point in shape.parts()], dtype=np.float64)

    def dlib_shape(self, face: Face):
        """The face as a dlib.full_object_detection (what dlib's face descriptor takes), without re-predicting."""
        dlib = import_dlib()
        points = [dlib.point(int(x), int(y)) for x, y in face.landmarks]
        return dlib.full_object_detection(dlib.rectangle(*face.box), points)
