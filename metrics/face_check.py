"""A second, independent opinion on dlib's face: facenet-pytorch's MTCNN must find a face in the same place, and
the face must have detail.

dlib's HOG detector (metrics.face_detect) finds the faces every face metric scores. Its false positives (a blob, a
textured background) would silently feed the metrics, so each frame's dlib box is checked against MTCNN (a cascade
of three CNNs trained on WIDER FACE and CelebA; its weights ship in the facenet-pytorch wheel): the frame passes when
MTCNN's most probable face has probability >= MIN_MTCNN_PROBABILITY, overlaps dlib's box by IoU >= MIN_IOU, and the
face inside dlib's box has detail >= MIN_FACE_DETAIL. Both detectors are lenient with blur: a face blurred to a blob
(Gaussian sigma 8 px per 256 px) whose eye sockets still show is "found" by both, so detail is checked on its own
(`face_detail`). Both detectors' confidences and the detail are kept.

facenet-pytorch 2.6.0 pins torch<2.3 in its metadata but runs on newer torch: it is installed with --no-deps (Makefile).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from dtl_foundation.media.face_detect import FaceLandmarker, as_rgb_uint8

MIN_MTCNN_PROBABILITY = 0.9
MIN_IOU = 0.4
# face_detail measured (docs/evaluation.md): sharp photographs and demo renders 0.32-0.60, Gaussian blur sigma 1.5 px
# ~0.2, sigma 3 px ~0.11-0.13, blobs ~0.07
MIN_FACE_DETAIL = 0.1


@dataclass(frozen=True)
class FrameFaceCheck:
    """One frame: dlib's box and score (None: no face), MTCNN's best box and probability, their IoU, the verdict."""

    dlib_box: tuple[int, int, int, int] | None
    dlib_score: float | None
    mtcnn_box: tuple[float, float, float, float] | None
    mtcnn_probability: float | None
    iou: float
    detail: float | None
    passed: bool


def import_mtcnn():
    try:
        from facenet_pytorch import MTCNN
    except ImportError as error:
        raise ImportError(
            "the face check needs facenet-pytorch's MTCNN: `pip install --no-deps facenet-pytorch==2.6.0` (its "
            "metadata pins an old torch that it does not need; `make install` does this)"
        ) from error
    return MTCNN


@functools.lru_cache(maxsize=None)
def _mtcnn(device: str):
    return import_mtcnn()(keep_all=True, device=device).eval()


def face_detail(rgb: np.ndarray, box: tuple[int, int, int, int], side: int = 64) -> float:
    """Mean |Laplacian| of the face (dlib's box, gray, resized to side x side) over its standard deviation: edge
    content independent of the face's size, brightness and contrast."""
    from PIL import Image
    from scipy.ndimage import laplace

    gray = Image.fromarray(rgb).convert("L").crop(box).resize((side, side), Image.Resampling.BILINEAR)
    gray = np.asarray(gray, dtype=np.float64)
    return float(np.abs(laplace(gray)).mean() / max(gray.std(), 1e-6))


def box_iou(a, b) -> float:
    """Intersection over union of two (left, top, right, bottom) boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


class FaceCheck:
    """dlib's face in a frame, checked by MTCNN (see the module's docstring)."""

    def __init__(self, landmarker: FaceLandmarker | None = None, device: str = "cpu",
                 min_probability: float = MIN_MTCNN_PROBABILITY, min_iou: float = MIN_IOU,
                 min_detail: float = MIN_FACE_DETAIL) -> None:
        self.landmarker = landmarker or FaceLandmarker(upsample=1)
        self.mtcnn = _mtcnn(device)
        self.min_probability = min_probability
        self.min_iou = min_iou
        self.min_detail = min_detail

    def mtcnn_face(self, rgb: np.ndarray) -> tuple[tuple[float, float, float, float], float] | None:
        """MTCNN's most probable face box and its probability, or None."""
        with torch.no_grad():
            boxes, probabilities = self.mtcnn.detect(rgb)
        if boxes is None:
            return None
        # facenet-pytorch returns object arrays under numpy 2
        boxes, probabilities = np.asarray(boxes, dtype=np.float64), np.asarray(probabilities, dtype=np.float64)
        best = int(np.argmax(probabilities))
        return tuple(float(v) for v in boxes[best]), float(probabilities[best])

    def __call__(self, image) -> FrameFaceCheck:
        rgb = as_rgb_uint8(image)
        face = self.landmarker.detect(rgb)
        other = self.mtcnn_face(rgb)
        iou = box_iou(face.box, other[0]) if face is not None and other is not None else 0.0
        detail = face_detail(rgb, face.box) if face is not None else None
        passed = (face is not None and other is not None and other[1] >= self.min_probability and iou >= self.min_iou
                  and detail >= self.min_detail)
        return FrameFaceCheck(dlib_box=None if face is None else face.box,
                              dlib_score=None if face is None else face.score,
                              mtcnn_box=None if other is None else other[0],
                              mtcnn_probability=None if other is None else other[1], iou=iou, detail=detail,
                              passed=passed)
