"""The inside of the mouth where the warped lips part: the rig's own render of that frame (cavity, teeth, tongue).

A closed mouth in the portrait has nothing to show between the lips once they part, so the pixels of the triangles
between the upper and lower inner lip (`cavity_triangles`) are taken from the avatar frame instead: an affine map
per frame, fitted from the portrait's moved lip points to the rig's projected ones, finds each pixel's place in
the avatar frame. The triangles' coverage on the warp's coarse grid, upsampled, gives a mask that is already soft
at its edge (feathered into the lips); it fades in over the first OPENING_FADE (of the face side) of opening so a
closed mouth stays the portrait's own. The colour keeps the portrait's saturation (a grey photo gets a grey mouth).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rendering.warp.contours import CONTOUR_PAIRS, contour_indices, facing_pairs

OPENING_FADE = 0.012


def lip_indices() -> np.ndarray:
    """Control-point indices of both lip contours (the points the interior's affine map is fitted on)."""
    sides = [contour_indices(c, s) for c in ("inner_lip", "outer_lip") for s in ("upper", "lower")]
    return np.unique(np.concatenate(sides))


def cavity_triangles(triangles: np.ndarray) -> np.ndarray:
    """(F,) bool: triangles with corners only on the inner lip, touching both its upper and its lower side."""
    upper, lower = (set(contour_indices("inner_lip", s)[1:-1].tolist()) for s in ("upper", "lower"))
    inner = upper | lower | set(CONTOUR_PAIRS["inner_lip"][0][::len(CONTOUR_PAIRS["inner_lip"][0]) - 1])
    return np.array([set(t) <= inner and bool(set(t) & upper) and bool(set(t) & lower) for t in triangles.tolist()])


def lip_opening(points: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """(B,) mean gap between facing inner-lip points of (B, N, 2) points, along the face's `down` (2,) direction."""
    upper, lower = facing_pairs("inner_lip")
    return ((points[:, lower] - points[:, upper]) @ down).mean(-1)


def fit_affine(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, 3, 2) least-squares affine maps taking (B, M, 2) source points to (B, M, 2) target points."""
    ones = torch.ones(*source.shape[:2], 1, dtype=source.dtype, device=source.device)
    return torch.linalg.lstsq(torch.cat([source, ones], -1), target).solution


def saturation(pixels: torch.Tensor) -> torch.Tensor:
    """Mean chroma (max - min over RGB) of (..., 3) pixels."""
    return (pixels.max(-1).values - pixels.min(-1).values).mean()


def draw_interior(frames: torch.Tensor, mask: torch.Tensor, pixels: torch.Tensor, affine: torch.Tensor,
                  avatar: torch.Tensor, chroma_scale: float) -> torch.Tensor:
    """Blend the avatar's mouth into (B, h, w, 3) frames where `mask` (B, h, w) is on.

    pixels (h, w, 2): the frames' pixel centres in portrait coordinates; affine (B, 3, 2): portrait -> avatar
    pixels; avatar (B, 3, S, S) in the frames' value range; chroma_scale: 0 (grey) .. 1 (the rig's colours).
    """
    size = avatar.shape[-1]
    homogeneous = torch.cat([pixels, torch.ones_like(pixels[..., :1])], -1)  # (h, w, 3)
    at = torch.einsum("hwk,bkc->bhwc", homogeneous, affine)
    interior = F.grid_sample(avatar, at * (2 / size) - 1, mode="bilinear", padding_mode="border",
                             align_corners=False).permute(0, 2, 3, 1)
    grey = interior.mean(-1, keepdim=True)
    interior = grey + chroma_scale * (interior - grey)
    return frames + mask[..., None] * (interior - frames)
