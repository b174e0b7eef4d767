"""The jaw probe of metrics/mouth_motion.py applied to the warp renderer, on any portrait.

face-vid2vid is probed with the probe's own first frame as the portrait; the warp can take any portrait, so the
regions are the portrait's own: its mouth (dlib's mouth landmarks plus the probe's margin) and its eyes-and-brows
band, in the face crop the output is measured on. The avatar's mouth change stays the yardstick.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from dtl_foundation.arkit import INDEX, NUM_BLENDSHAPES
from dtl_foundation.media.face_detect import LEFT_EYE, MOUTH, RIGHT_EYE
from dtl_foundation.media.portrait import crop, crop_box_from_landmarks, find_face
from metrics.mouth_motion import (
    MOUTH_MARGIN_PX,
    JawProbe,
    bounding_region,
    mouth_follows_jaw,
)
from rendering.warp.renderer import WarpRenderer


def probe_coefficients(probe: JawProbe) -> np.ndarray:
    """(T, 52) the probe's blendshapes: jawOpen only."""
    coeffs = np.zeros((len(probe.jaw), NUM_BLENDSHAPES), np.float32)
    coeffs[:, INDEX["jawOpen"]] = probe.jaw
    return coeffs


@torch.no_grad()
def probe_warp(image: np.ndarray, probe: JawProbe, renderer: WarpRenderer | None = None,
               face_index: int | None = None) -> dict[str, float]:
    """mouth_follows_jaw scores of the warp renderer animating `image` (H, W, 3) uint8 with the probe's jaw."""
    face = find_face(image, source="the probed portrait", face_index=face_index)
    box = crop_box_from_landmarks(face.landmarks)
    size = probe.frames.shape[-1]
    renderer = renderer or WarpRenderer()
    frames = np.concatenate(list(renderer.animate(image, face.landmarks, probe_coefficients(probe))))
    output = torch.from_numpy(np.stack([crop(frame, box, size) for frame in frames])).permute(0, 3, 1, 2) / 255
    in_crop = (face.landmarks - [box.left, box.top]) * size / box.side
    regions = dataclasses.replace(probe, mouth=bounding_region(in_crop[MOUTH], MOUTH_MARGIN_PX),
                                  upper_face=bounding_region(in_crop[np.r_[17:27, LEFT_EYE.start:RIGHT_EYE.stop]]))
    return mouth_follows_jaw(output, regions)
