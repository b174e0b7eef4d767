"""68 dlib landmarks on every frame of a video: detect the face (on a reduced copy), carry its box over misses."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from dtl_foundation.media.face_detect import FaceLandmarker, import_dlib
from rendering.rig_landmarks import NUM_LANDMARKS


@dataclass
class TrackedLandmarks:
    """landmarks (T, 68, 2) pixels of the original frames, NaN where no face; detected (T,) where the detector
    itself found the face (the others reused a recent box); size (height, width) of the frames."""

    landmarks: np.ndarray
    detected: np.ndarray
    size: tuple[int, int]

    @property
    def face_share(self) -> float:
        return float(np.isfinite(self.landmarks[:, 0, 0]).mean()) if len(self.landmarks) else 0.0


class FaceTracker:
    """Per frame: dlib's detector on a copy whose longer side is at most `detect_side` pixels (faster on large
    videos), again with one upsampling if that misses; when both miss, the last box (at most `max_gap`
    frames old) is reused, so a single missed detection does not drop a frame."""

    def __init__(self, landmarker=None, detect_side: int = 480, max_gap: int = 5) -> None:
        self.landmarker = landmarker or FaceLandmarker(upsample=0)
        self.detector = import_dlib().get_frontal_face_detector()
        self.detect_side = detect_side
        self.max_gap = max_gap

    def _detect_box(self, frame: np.ndarray) -> tuple[float, float, float, float] | None:
        h, w = frame.shape[:2]
        scale = min(1.0, self.detect_side / max(h, w))
        small = frame if scale == 1.0 else np.asarray(
            Image.fromarray(frame).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR))
        for upsample in (0, 1):
            boxes, scores, _ = self.detector.run(np.ascontiguousarray(small), upsample, 0.0)
            if boxes:
                box = boxes[int(np.argmax(scores))]
                return tuple(v / scale for v in (box.left(), box.top(), box.right(), box.bottom()))
        return None

    def track(self, frames: np.ndarray) -> TrackedLandmarks:
        """Landmarks of (T, H, W, 3) uint8 RGB frames."""
        out = np.full((len(frames), NUM_LANDMARKS, 2), np.nan)
        detected = np.zeros(len(frames), bool)
        last_box, age = None, 0
        for t, frame in enumerate(frames):
            box = self._detect_box(frame)
            if box is not None:
                last_box, age, detected[t] = box, 0, True
            elif last_box is not None and age < self.max_gap:
                box, age = last_box, age + 1
            if box is not None:
                out[t] = self.landmarker.landmarks(frame, box)
        return TrackedLandmarks(landmarks=out, detected=detected, size=tuple(frames.shape[1:3]))


def to_camera_pixels(landmarks: np.ndarray, frame_size: tuple[int, int], camera_size: int) -> np.ndarray:
    """Landmarks of (height, width) frames in the calibration camera's square image: the longer side spans it."""
    h, w = frame_size
    side = max(h, w)
    shifted = landmarks + np.array([(side - w) / 2, (side - h) / 2])
    return shifted * (camera_size / side)
