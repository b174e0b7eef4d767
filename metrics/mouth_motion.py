"""Does a motion-transfer renderer move the portrait's mouth with the driving jaw? (the renderer issue's criterion)

A probe sequence: the default rig of one demo speaker opens and closes its jaw (jawOpen 0 -> 1 -> 0, three times;
no other shape, no head motion), rendered and face-cropped as the talking-video datamodule crops training videos.
Its first frame is the portrait and every frame drives it in relative mode. Per output frame, the mean absolute
change against output frame 0 is taken over the mouth region (dlib's mouth landmarks of the rendered first frame,
plus a margin) and over the upper face (the band of the eyes and brows): the mouth change must follow jawOpen
(Pearson r), be of a size comparable to the avatar's own mouth change, and the upper face should stay still.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dtl_foundation.arkit import INDEX, NUM_BLENDSHAPES
from dtl_foundation.media.face_detect import FaceLandmarker, LEFT_EYE, MOUTH, RIGHT_EYE
from dtl_foundation.media.portrait import PortraitError, crop, crop_box_from_landmarks
from rendering.default_rig import default_rig
from rendering.gl_renderer import FaceRenderer
from rendering.motion_transfer import MotionTransfer
from rendering.speaker_faces import speaker_face_params

MOUTH_MARGIN_PX = 3


@dataclass
class JawProbe:
    frames: torch.Tensor  # (T, 3, S, S) in [0, 1]: the face-cropped rig frames
    jaw: np.ndarray  # (T,) the jawOpen driving them
    mouth: tuple[slice, slice]  # rows, columns of the mouth region in the crop
    upper_face: tuple[slice, slice]  # rows, columns of the eyes-and-brows band
    avatar_mouth_change: np.ndarray  # (T,) the probe's own mouth-region change against its frame 0


def region_change(frames: torch.Tensor, region: tuple[slice, slice]) -> np.ndarray:
    """(T,) mean |frame_t - frame_0| over a region of (T, 3, H, W) frames."""
    patch = frames[:, :, region[0], region[1]].float()
    return (patch - patch[:1]).abs().mean((1, 2, 3)).cpu().numpy()


def bounding_region(points: np.ndarray, margin: int = 0) -> tuple[slice, slice]:
    """Rows, columns of the pixel box around (N, 2) x, y points, widened by `margin` pixels."""
    (x0, y0), (x1, y1) = np.floor(points.min(0)).astype(int) - margin, np.ceil(points.max(0)).astype(int) + margin
    return slice(max(y0, 0), y1), slice(max(x0, 0), x1)


def jaw_probe(speaker: str = "M001", image_size: int = 64, frames: int = 50, cycles: int = 3,
              render_size: int = 256) -> JawProbe:
    """Render the jaw-only probe sequence of a demo speaker's face, cropped to the renderer's input size as the
    talking-video datamodule crops (one FFHQ-style box from dlib's landmarks of the first frame)."""
    jaw = 0.5 - 0.5 * np.cos(np.arange(frames) / frames * 2 * np.pi * cycles)
    coeffs = np.zeros((frames, NUM_BLENDSHAPES), np.float32)
    coeffs[:, INDEX["jawOpen"]] = jaw
    with FaceRenderer(default_rig(speaker_face_params(speaker)), render_size) as renderer:
        avatar = renderer.render(coeffs).numpy()
    face = FaceLandmarker(upsample=1).detect(avatar[0])
    if face is None:
        raise PortraitError(f"the {speaker} jaw probe", "no face found in its first frame (dlib)")
    box = crop_box_from_landmarks(face.landmarks)
    in_crop = (face.landmarks - [box.left, box.top]) * image_size / box.side
    cropped = torch.from_numpy(np.stack([crop(frame, box, image_size) for frame in avatar]))
    cropped = cropped.permute(0, 3, 1, 2).float() / 255
    mouth_region = bounding_region(in_crop[MOUTH], MOUTH_MARGIN_PX)
    return JawProbe(frames=cropped, jaw=jaw, mouth=mouth_region,
                    upper_face=bounding_region(in_crop[np.r_[17:27, LEFT_EYE.start:RIGHT_EYE.stop]]),
                    avatar_mouth_change=region_change(cropped, mouth_region))


def mouth_follows_jaw(output: torch.Tensor, probe: JawProbe) -> dict[str, float]:
    """Scores of (T, 3, S, S) output frames driven by the probe: r (mouth change vs jawOpen), the largest mouth change
    as a fraction of the avatar's, and the largest upper-face change as a fraction of the output's mouth change."""
    mouth, upper = region_change(output, probe.mouth), region_change(output, probe.upper_face)
    r = float(np.corrcoef(mouth, probe.jaw)[0, 1]) if mouth.std() > 0 else float("nan")
    return {"mouth_r": r, "mouth_change_ratio": float(mouth.max() / probe.avatar_mouth_change.max()),
            "upper_face_ratio": float(upper.max() / mouth.max()) if mouth.max() > 0 else float("nan"),
            "mouth_change_max": float(mouth.max())}


@torch.no_grad()
def probe_renderer(model: torch.nn.Module, probe: JawProbe) -> dict[str, float]:
    """Drive the probe's first frame with all of its frames through `model` (a FaceVid2Vid) in relative mode."""
    was_training = model.training
    device = next(model.parameters()).device
    try:
        output = torch.cat(list(MotionTransfer(model, probe.frames[0].to(device))(probe.frames)))
    finally:
        model.train(was_training)
    return mouth_follows_jaw(output, probe)
