"""M-LMD and F-LMD, the landmark distances EAT reports, on dlib's 68 landmarks.

Per frame the 68 (x, y) landmarks of the generated and the ground-truth face are each centred on their own mean (which
removes head translation); the distance is the sum over frames and points of the Euclidean distance between matching
centred points, divided by frames x points. M-LMD uses the mouth (points 48-67, still centred on all 68, so a mouth that
moves relative to the face counts), F-LMD all 68. Units: pixels of the frames given (EAT scores 256x256 frames).
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric

from dtl_foundation.media.face_detect import MOUTH, NUM_LANDMARKS, FaceLandmarker


def centred(landmarks: np.ndarray) -> np.ndarray:
    """(T, 68, 2) landmarks minus each frame's mean point."""
    return landmarks - landmarks.mean(axis=-2, keepdims=True)


def landmark_distance(preds: np.ndarray, target: np.ndarray, points: slice = slice(None)) -> float:
    """Mean Euclidean distance over frames and the chosen points between per-frame mean-centred landmarks."""
    preds, target = np.asarray(preds, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if preds.shape != target.shape or preds.ndim != 3 or preds.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected two (T, 68, 2) landmark arrays, got {preds.shape} and {target.shape}")
    distances = np.linalg.norm(centred(preds)[:, points] - centred(target)[:, points], axis=-1)
    return float(distances.sum() / distances.size)


def mouth_landmark_distance(preds: np.ndarray, target: np.ndarray) -> float:
    """M-LMD of one video: points 48-67."""
    return landmark_distance(preds, target, MOUTH)


def face_landmark_distance(preds: np.ndarray, target: np.ndarray) -> float:
    """F-LMD of one video: all 68 points."""
    return landmark_distance(preds, target)


class LandmarkDistance(Metric):
    """M-LMD and F-LMD averaged over videos.

    `update(preds, target)`: both videos (B, T, 3, H, W) RGB float in [0, 1] or uint8, landmarked with dlib here, or
    landmarks (B, T, 68, 2). Frames where dlib finds no face in either video are left out and counted
    (`frames_without_face`); a video with no frame left (a generator that lost the face) gets no distance and is
    counted (`videos_without_face`); with no video left the distances are NaN.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, upsample: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.upsample = upsample
        self._landmarker: FaceLandmarker | None = None
        for name in ("mouth_sum", "face_sum"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        for name in ("videos", "frames_without_face", "videos_without_face"):
            self.add_state(name, default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _video_landmarks(self, frames: torch.Tensor) -> list[np.ndarray | None]:
        if self._landmarker is None:
            self._landmarker = FaceLandmarker(upsample=self.upsample)
        faces = [self._landmarker.detect(frame) for frame in frames]
        return [None if face is None else face.landmarks for face in faces]

    def _as_landmarks(self, batch: torch.Tensor) -> list[list[np.ndarray | None]]:
        if batch.ndim == 4 and tuple(batch.shape[-2:]) == (NUM_LANDMARKS, 2):
            return [[frame for frame in video.double().cpu().numpy()] for video in batch]
        if batch.ndim == 5 and batch.shape[2] == 3:
            return [self._video_landmarks(video) for video in batch]
        raise ValueError(f"expected videos (B, T, 3, H, W) or landmarks (B, T, 68, 2), got {tuple(batch.shape)}")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.shape[:2] != target.shape[:2]:
            raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} differ in batch or frames")
        for pred_video, target_video in zip(self._as_landmarks(preds), self._as_landmarks(target)):
            pairs = [(p, t) for p, t in zip(pred_video, target_video) if p is not None and t is not None]
            self.frames_without_face += len(pred_video) - len(pairs)
            if not pairs:
                self.videos_without_face += 1
                continue
            pred_landmarks, target_landmarks = (np.stack(side) for side in zip(*pairs))
            self.mouth_sum += mouth_landmark_distance(pred_landmarks, target_landmarks)
            self.face_sum += face_landmark_distance(pred_landmarks, target_landmarks)
            self.videos += 1

    def compute(self) -> dict[str, torch.Tensor]:
        if self.videos + self.videos_without_face == 0:
            raise ValueError("LandmarkDistance has seen no video")
        videos = self.videos.double() if self.videos > 0 else torch.tensor(float("nan"), dtype=torch.float64)
        return {"m_lmd": (self.mouth_sum / videos).float(), "f_lmd": (self.face_sum / videos).float(),
                "frames_without_face": self.frames_without_face.clone(),
                "videos_without_face": self.videos_without_face.clone()}
