"""The inside of the mouth where the warped lips part: the rig's own render of that frame (cavity, teeth, tongue).

A closed mouth in the portrait has nothing to show between the lips once they part, so the pixels inside the moved
inner lip (`polygon_mask`, anti-aliased, so it is feathered into the lips) are taken from the avatar frame
instead: each pixel's place between the portrait's moved inner lips is taken to the same place between the
rig's projected inner lips on the avatar frame (`mouth_correspondence`). The mask fades in over the first
OPENING_FADE (of the face side) of opening, so a closed mouth stays the portrait's own. The colour keeps the
portrait's saturation (a grey photo gets a grey mouth).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rendering.warp.contours import contour_indices, facing_pairs

OPENING_FADE = 0.012


def inner_lip_sides() -> tuple[np.ndarray, np.ndarray]:
    """Control-point indices of the upper and the lower inner lip, corner to corner."""
    return contour_indices("inner_lip", "upper"), contour_indices("inner_lip", "lower")


def polygon_mask(polygon: torch.Tensor, pixels: torch.Tensor, samples: int = 2) -> torch.Tensor:
    """(B, h, w) coverage in [0, 1] of pixels (h, w, 2) (their centres) by closed polygons (B, K, 2): the even-odd
    rule at samples x samples points a pixel, averaged, so the edge is anti-aliased."""
    offsets = (torch.arange(samples, device=pixels.device, dtype=pixels.dtype) + 0.5) / samples - 0.5
    sub = torch.stack(torch.meshgrid(offsets, offsets, indexing="xy"), -1).reshape(-1, 2)
    points = (pixels.reshape(-1, 1, 2) + sub).reshape(-1, 2)  # (P * s^2, 2)
    a, b = polygon, polygon.roll(-1, dims=1)  # (B, K, 2) edges a -> b
    py, px = points[None, :, None, 1], points[None, :, None, 0]
    ay, by, ax, bx = a[:, None, :, 1], b[:, None, :, 1], a[:, None, :, 0], b[:, None, :, 0]
    spans = (ay > py) != (by > py)
    crossing_x = ax + (py - ay) * (bx - ax) / torch.where(by == ay, torch.ones_like(by), by - ay)
    inside = ((spans & (px < crossing_x)).sum(-1) % 2).float()  # (B, P * s^2)
    return inside.reshape(len(polygon), *pixels.shape[:2], samples * samples).mean(-1)


def lip_opening(points: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """(B,) mean gap between facing inner-lip points of (B, N, 2) points, along the face's `down` (2,) direction."""
    upper, lower = facing_pairs("inner_lip")
    return ((points[:, lower] - points[:, upper]) @ down).mean(-1)


def _interpolate(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear f(x) for (B, P) x through (B, K) knots xp (made non-decreasing) with values fp."""
    xp = xp.cummax(-1).values
    right = torch.searchsorted(xp.contiguous(), x.contiguous()).clamp(1, xp.shape[-1] - 1)
    x0, x1 = xp.gather(-1, right - 1), xp.gather(-1, right)
    f0, f1 = fp.gather(-1, right - 1), fp.gather(-1, right)
    t = ((x - x0) / (x1 - x0).clamp(min=1e-6)).clamp(0, 1)
    return f0 + t * (f1 - f0)


def _mouth_frame(upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Origin (B, 2), unit axes along and across (B, 2) and length (B,) of the corner-to-corner line."""
    axis = upper[:, -1] - upper[:, 0]
    length = axis.norm(dim=-1).clamp(min=1e-6)
    along = axis / length[:, None]
    return upper[:, 0], along, torch.stack([-along[:, 1], along[:, 0]], -1), length


def mouth_correspondence(pixels: torch.Tensor, upper: torch.Tensor, lower: torch.Tensor, rig_upper: torch.Tensor,
                         rig_lower: torch.Tensor) -> torch.Tensor:
    """(B, P, 2) places on the rig's frame of (P, 2) portrait pixels between the portrait's inner lips.

    A pixel's coordinates are u, its fraction of the way from one mouth corner to the other, and v, its fraction of
    the way from the upper inner lip down to the lower one at that u; the same (u, v) between the rig's inner lips
    is its place there, so the rig's teeth and tongue land against the matching lip whatever the mouth's shape.
    upper, lower (B, K, 2): the portrait's inner lip corner to corner; rig_upper, rig_lower: the rig's.
    """
    origin, along, across, length = _mouth_frame(upper)
    relative = pixels[None] - origin[:, None]
    u = (relative @ along[..., None])[..., 0] / length[:, None]
    w = (relative @ across[..., None])[..., 0] / length[:, None]

    def side_offsets(contour, origin, along, across, length):
        rel = contour - origin[:, None]
        return ((rel * along[:, None]).sum(-1) / length[:, None], (rel * across[:, None]).sum(-1) / length[:, None])

    uu, wu = side_offsets(upper, origin, along, across, length)
    ul, wl = side_offsets(lower, origin, along, across, length)
    top, bottom = _interpolate(u, uu, wu), _interpolate(u, ul, wl)
    v = ((w - top) / (bottom - top).clamp(min=1e-6)).clamp(0, 1)
    r_origin, r_along, r_across, r_length = _mouth_frame(rig_upper)
    ru, rwu = side_offsets(rig_upper, r_origin, r_along, r_across, r_length)
    rl, rwl = side_offsets(rig_lower, r_origin, r_along, r_across, r_length)
    r_top, r_bottom = _interpolate(u, ru, rwu), _interpolate(u, rl, rwl)
    r_w = r_top + v * (r_bottom - r_top)
    return r_origin[:, None] + r_length[:, None, None] * (u[..., None] * r_along[:, None] + r_w[..., None]
                                                          * r_across[:, None])


def saturation(pixels: torch.Tensor) -> torch.Tensor:
    """Mean chroma (max - min over RGB) of (..., 3) pixels."""
    return (pixels.max(-1).values - pixels.min(-1).values).mean()


def draw_interior(frames: torch.Tensor, mask: torch.Tensor, at: torch.Tensor, avatar: torch.Tensor,
                  chroma_scale: float) -> torch.Tensor:
    """Blend the avatar's mouth into (B, h, w, 3) frames where `mask` (B, h, w) is on.

    at (B, h, w, 2): each pixel's place on the avatar frame (pixels); avatar (B, 3, S, S) in the frames' value
    range; chroma_scale: 0 (grey) .. 1 (the rig's colours).
    """
    size = avatar.shape[-1]
    interior = F.grid_sample(avatar, at * (2 / size) - 1, mode="bilinear", padding_mode="border",
                             align_corners=False).permute(0, 2, 3, 1)
    grey = interior.mean(-1, keepdim=True)
    interior = grey + chroma_scale * (interior - grey)
    return frames + mask[..., None] * (interior - frames)
