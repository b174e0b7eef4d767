"""Identity preservation: how close each generated frame's face embedding stays to the portrait's.

Default backbone: dlib's ResNet face descriptor (128-d, from face-recognition-models, CC0), computed by dlib on its own
150x150 chip (padding 0.25) around the HOG-detected face and its 68 landmarks; it is available offline. Option:
ArcFace iresnet100 (insightface, non-commercial weights from a configured path and sha256) on 112x112 crops aligned by
five landmarks (eye centres, nose tip, mouth corners from the same 68 points) to insightface's template.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torchmetrics import Metric

from dtl_foundation.media.face_detect import FaceLandmarker, as_rgb_uint8, import_dlib
from dtl_foundation.weights import resolve_weights

Embedder = Callable[[np.ndarray], "np.ndarray | None"]
# dlib's published rule (face_recognition, dlib's dnn_face_recognition example): same person when distance < 0.6
DLIB_SAME_PERSON_DISTANCE = 0.6


class DlibFaceDescriptor:
    """dlib's 128-d ResNet descriptor of the best face in an RGB frame, or None when dlib finds no face.

    Its raw descriptors are compared as they are: dlib's same-person rule is a Euclidean distance below 0.6.
    """

    def __init__(self, landmarker: FaceLandmarker | None = None) -> None:
        self.landmarker = landmarker or FaceLandmarker()
        path = resolve_weights("dlib_face_recognition_resnet")
        self._model = import_dlib().face_recognition_model_v1(str(path))

    def __call__(self, image: np.ndarray | torch.Tensor) -> np.ndarray | None:
        rgb = as_rgb_uint8(image)
        face = self.landmarker.detect(rgb)
        if face is None:
            return None
        shape = self.landmarker.dlib_shape(face)
        return np.asarray(self._model.compute_face_descriptor(rgb, shape, 0, 0.25), dtype=np.float64)


def build_embedder(
    backbone: str, arcface_weights: str | Path | None = None, arcface_sha256: str | None = None, upsample: int = 1
) -> Embedder:
    """'dlib' (offline default) or 'arcface' (needs the configured iresnet100 weights and their sha256)."""
    landmarker = FaceLandmarker(upsample=upsample)
    if backbone == "dlib":
        return DlibFaceDescriptor(landmarker)
    if backbone == "arcface":
        from metrics.arcface import ArcFaceDescriptor, pretrained_iresnet100  # scikit-image, only for this backbone

        return ArcFaceDescriptor(pretrained_iresnet100(arcface_weights, arcface_sha256), landmarker)
    raise ValueError(f"unknown identity backbone {backbone!r}; choose 'dlib' or 'arcface'")


def frame_similarities(embedder: Embedder, reference: np.ndarray, frames) -> list[tuple[float, float] | None]:
    """Per frame (cosine similarity, Euclidean distance) of its face embedding to `reference`; None: no face."""
    result: list[tuple[float, float] | None] = []
    for frame in frames:
        embedding = embedder(as_rgb_uint8(frame))
        if embedding is None:
            result.append(None)
            continue
        cosine = embedding @ reference / (np.linalg.norm(embedding) * np.linalg.norm(reference))
        result.append((float(cosine), float(np.linalg.norm(embedding - reference))))
    return result


def same_person(backbone: str, cosine: float, distance: float, arcface_threshold: float | None = None) -> bool | None:
    """The backbone's published verification rule: dlib distance < 0.6; ArcFace cosine >= a configured threshold
    (None without one: ArcFace's threshold depends on the benchmark it was tuned on)."""
    if backbone == "dlib":
        return distance < DLIB_SAME_PERSON_DISTANCE
    return None if arcface_threshold is None else cosine >= arcface_threshold


class IdentitySimilarity(Metric):
    """Cosine similarity and Euclidean distance between the portrait's face embedding and each generated frame's.

    `update(portraits, videos)`: portraits (B, 3, H, W), videos (B, T, 3, H, W), RGB float in [0, 1] or uint8. Each
    video's score is the mean over its frames in which a face is found; `compute` averages the videos. Frames without a
    detectable face are left out and counted (`frames_without_face`); a portrait without one is an error.
    embedder: 'dlib', 'arcface', or any callable RGB (H, W, 3) uint8 -> embedding or None.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(
        self,
        embedder: str | Embedder = "dlib",
        arcface_weights: str | Path | None = None,
        arcface_sha256: str | None = None,
        upsample: int = 1,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(embedder, str):
            embedder = build_embedder(embedder, arcface_weights, arcface_sha256, upsample)
        self.embedder = embedder
        for name in ("cosine_sum", "distance_sum"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("videos", "frames_without_face"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, portraits: torch.Tensor, videos: torch.Tensor) -> None:
        if videos.ndim != 5 or portraits.ndim != 4 or portraits.shape[0] != videos.shape[0]:
            raise ValueError(
                f"expected portraits (B, 3, H, W) and videos (B, T, 3, H, W), got {tuple(portraits.shape)} and "
                f"{tuple(videos.shape)}"
            )
        for index, (portrait, frames) in enumerate(zip(portraits, videos)):
            reference = self.embedder(as_rgb_uint8(portrait))
            if reference is None:
                raise ValueError(f"no face found in portrait {index} of the batch: identity cannot be scored")
            scored = [pair for pair in frame_similarities(self.embedder, reference, frames) if pair is not None]
            self.frames_without_face += len(frames) - len(scored)
            if scored:
                cosines, distances = zip(*scored)
                self.cosine_sum += float(np.mean(cosines))
                self.distance_sum += float(np.mean(distances))
                self.videos += 1

    def compute(self) -> dict[str, torch.Tensor]:
        if self.videos == 0:
            raise ValueError("IdentitySimilarity has no video with a detectable face to score")
        return {
            "cosine_similarity": (self.cosine_sum / self.videos).float(),
            "euclidean_distance": (self.distance_sum / self.videos).float(),
            "frames_without_face": self.frames_without_face.clone(),
        }
