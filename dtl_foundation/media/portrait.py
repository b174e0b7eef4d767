"""The portrait's face: detection (dlib, offline), an aligned square crop for the renderer, and paste-back.

The crop follows the rule the avatar camera frames its renders with (FFHQ's, rendering/gl_renderer.Camera): side
2 x max(2.0 x eye distance, 1.8 x eye-to-mouth distance), centred a tenth of the way from the eyes to the mouth,
so portraits and the training videos share one framing. Crops that leave the image are filled by edge replication.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from dtl_foundation.media.face_detect import LEFT_EYE, MOUTH, RIGHT_EYE, Face, FaceLandmarker

log = logging.getLogger(__name__)
DETECT_MAX_SIDE = 1024  # larger images are searched for faces at this size (dlib's time grows with the area)
MAX_UPSAMPLED_SIDE = 4096  # with no face found, the search is repeated upsampled further, up to this size


class PortraitError(ValueError):
    """A portrait that cannot be used; the message is "<path>: <problem>"."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.problem = str(path), problem


@dataclass(frozen=True)
class CropBox:
    """A square crop: top-left corner and side in pixels of the full image (may reach outside it)."""

    left: float
    top: float
    side: float


def load_portrait(path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file (transparent parts composited over white, grey expanded)."""
    from PIL import UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise PortraitError(path, "no such image file")
    try:
        with Image.open(path) as image:
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                image = image.convert("RGBA")
                return np.asarray(Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB"))
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise PortraitError(path, f"not a readable image ({e})") from None


def crop_box_from_landmarks(landmarks: np.ndarray) -> CropBox:
    """The FFHQ-style square around 68 dlib landmarks."""
    eye_left, eye_right = landmarks[LEFT_EYE].mean(0), landmarks[RIGHT_EYE].mean(0)
    eyes = (eye_left + eye_right) / 2
    eye_to_mouth = landmarks[MOUTH].mean(0) - eyes
    side = 2 * max(2.0 * float(np.linalg.norm(eye_right - eye_left)), 1.8 * float(np.linalg.norm(eye_to_mouth)))
    centre = eyes + 0.1 * eye_to_mouth
    return CropBox(left=float(centre[0] - side / 2), top=float(centre[1] - side / 2), side=side)


def find_face(image: np.ndarray, landmarker: FaceLandmarker | None = None, source: str | os.PathLike = "image",
              face_index: int | None = None, max_upsampled_side: int = MAX_UPSAMPLED_SIDE) -> Face:
    """One face of an RGB image with its 68 landmarks: the largest, or the `face_index`-th by size (0 = largest).

    Images larger than DETECT_MAX_SIDE are searched at that size and their landmarks placed at full resolution;
    when nothing is found the search is repeated with the image doubled (dlib's upsampling) while it stays within
    `max_upsampled_side` (0: no second search), which finds small and partly turned faces. With several faces the
    choice is logged. PortraitError naming `source` when there is no face or no such face index.
    """
    landmarker = landmarker or FaceLandmarker(upsample=1)
    scale = min(1.0, DETECT_MAX_SIDE / max(image.shape[:2]))
    small = image if scale == 1 else np.asarray(Image.fromarray(image).resize(
        (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))), Image.Resampling.BOX))
    faces, upsample = landmarker.detect_all(small), landmarker.upsample
    while not faces and max(small.shape[:2]) * 2 ** (upsample + 1) <= max_upsampled_side:
        upsample += 1
        faces = FaceLandmarker(upsample=upsample).detect_all(small)
    if not faces:
        raise PortraitError(source, "no face found (dlib's frontal face detector); use a frontal portrait with the "
                                    "face at least ~40 px wide")
    faces.sort(key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    index = 0 if face_index is None else face_index
    if not 0 <= index < len(faces):
        raise PortraitError(source, f"has {len(faces)} face(s); the face index must be 0..{len(faces) - 1}, "
                                    f"got {face_index}")
    face = faces[index]
    if scale != 1:
        box = tuple(int(round(v / scale)) for v in face.box)
        face = Face(box=box, score=face.score, landmarks=landmarker.landmarks(image, box))
    if len(faces) > 1:
        log.warning("%s: %d faces found; using face %d (%s by size, box left/top/right/bottom %s); choose another "
                    "with --face-index", source, len(faces), index, "the largest" if index == 0 else f"#{index}",
                    face.box)
    return face


def detect_crop_box(image: np.ndarray, landmarker: FaceLandmarker | None = None,
                    source: str | os.PathLike = "image", face_index: int | None = None) -> CropBox:
    """The crop of the chosen face (`find_face`, one search: video frames are tried one after another) in an RGB
    image; PortraitError naming `source` when there is none."""
    return crop_box_from_landmarks(find_face(image, landmarker, source, face_index, max_upsampled_side=0).landmarks)


def crop(image: np.ndarray, box: CropBox, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the box resampled bilinearly, edge-replicated outside the image."""
    height, width = image.shape[:2]
    xs = box.left + (np.arange(size) + 0.5) * box.side / size - 0.5
    ys = box.top + (np.arange(size) + 0.5) * box.side / size - 0.5
    grid_x = (2 * (xs + 0.5) / width - 1)[None, :].repeat(size, 0)
    grid_y = (2 * (ys + 0.5) / height - 1)[:, None].repeat(size, 1)
    grid = torch.from_numpy(np.stack([grid_x, grid_y], -1)).float()[None]
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    # Antialias first when shrinking by more than 2x, so the crop is not aliased.
    factor = box.side / size
    if factor > 2:
        pixels = F.avg_pool2d(pixels, kernel_size=int(factor), stride=1, padding=int(factor) // 2,
                              count_include_pad=False)[..., :height, :width]
    out = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def feather_mask(side: int, border: float = 0.12) -> np.ndarray:
    """(side, side) weights: 1 inside, falling smoothly to 0 over the outer `border` of the square."""
    ramp = np.clip(np.minimum(np.arange(side) + 0.5, side - np.arange(side) - 0.5) / (border * side), 0, 1)
    ramp = ramp * ramp * (3 - 2 * ramp)
    return np.minimum(ramp[:, None], ramp[None, :])


def paste_back(image: np.ndarray, face: np.ndarray, box: CropBox, border: float = 0.12) -> np.ndarray:
    """`image` with the generated square `face` resized onto `box`, blended through a feathered edge."""
    height, width = image.shape[:2]
    left, top, side = int(round(box.left)), int(round(box.top)), max(int(round(box.side)), 1)
    resized = F.interpolate(torch.from_numpy(np.ascontiguousarray(face)).permute(2, 0, 1)[None].float(),
                            size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    resized = resized[0].permute(1, 2, 0).numpy()
    weights = feather_mask(side, border)[..., None]
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + side, width), min(top + side, height)
    if x1 <= x0 or y1 <= y0:
        return image.copy()
    out = image.astype(np.float32)
    patch = resized[y0 - top:y1 - top, x0 - left:x1 - left]
    w = weights[y0 - top:y1 - top, x0 - left:x1 - left]
    out[y0:y1, x0:x1] = w * patch + (1 - w) * out[y0:y1, x0:x1]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)
