"""The face square the video judges see (the video emotion classifier, the SyncNet expert): one box per video, the
median of dlib's boxes on a few evenly spaced frames, widened by `crop_scale` into a square around its centre, edges
replicated where it leaves the frame, resized with antialiasing."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from dtl_foundation.media.face_detect import FaceLandmarker
from dtl_foundation.media.video_read import VideoReadError


def median_face_box(frames: np.ndarray, path: str | os.PathLike, probes: int = 3, upsample: int = 1
                    ) -> tuple[float, float, float, float]:
    """(left, top, right, bottom): the median of dlib's boxes on `probes` evenly spaced frames of (T, H, W, 3)."""
    landmarker = FaceLandmarker(upsample=upsample)
    index = np.unique(np.linspace(0, len(frames) - 1, probes).round().astype(int))
    boxes = [face.box for i in index if (face := landmarker.detect(frames[i])) is not None]
    if not boxes:
        raise VideoReadError(path, f"dlib finds no face in frames {index.tolist()}: cannot crop the face")
    return tuple(float(v) for v in np.median(np.array(boxes, dtype=np.float64), axis=0))


def crop_square(frames: np.ndarray, box: tuple[float, float, float, float], size: int, crop_scale: float
                ) -> np.ndarray:
    """(T, size, size, 3) uint8: the square of side crop_scale x the box's larger side around its centre, edges
    replicated where it leaves the frame, resized with antialiasing."""
    left, top, right, bottom = box
    side = max(right - left, bottom - top) * crop_scale
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = x0 + int(round(side)), y0 + int(round(side))
    height, width = frames.shape[1:3]
    pad = max(0, -x0, -y0, x1 - width, y1 - height)
    if pad:
        frames = np.pad(frames, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    region = torch.from_numpy(np.ascontiguousarray(frames[:, y0 + pad:y1 + pad, x0 + pad:x1 + pad]))
    out = []
    for chunk in region.split(64):  # bounded memory for long videos
        chunk = chunk.permute(0, 3, 1, 2).float()
        resized = F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out.append(resized.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1))
    return torch.cat(out).numpy()
