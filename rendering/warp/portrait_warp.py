"""One portrait animated by rig blendshapes in relative mode, with a geometric warp instead of a network.

Per frame the rig's control points (rendering/warp/rig_points.py) are projected onto the avatar frame (with the
track's head pose when it has one); their displacement from a reference expression, turned and scaled onto the
portrait's face by the similarity that best maps the rig's resting landmarks onto the portrait's, moves the
portrait's control points. The reference is what the portrait is taken to show: the rig's neutral face by default,
so a constant expression (a sad track from start to end) reaches the portrait; face-vid2vid's relative mode proper,
the track's first frame, cancels whatever the first frame already shows. An eye opens and closes in proportion to
its own opening, as much as the rig's eye does (the rig's lids meet unevenly, and a portrait's eye is rarely as open
as the rig's); facing lip and lid points never cross. A mesh warp (rendering/warp/mesh_warp.py) over the face box,
with fixed anchors on a square around it, moves the pixels at the portrait's own resolution, so everything outside
the moving face is the portrait's own pixels and there is no seam to hide; the mouth interior is drawn where the
lips part."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from skimage.transform import SimilarityTransform

from dtl_foundation.media.portrait import CropBox, crop_box_from_landmarks
from rendering.warp.contours import (
    CONTOUR_PAIRS,
    EYELID_CONTOURS,
    NUM_LANDMARKS,
    facing_pairs,
    inner_lip_polygon,
    interpolation_matrix,
)
from rendering.warp.mesh_warp import MeshWarp, upsample
from rendering.warp.mouth_interior import (
    OPENING_FADE,
    draw_interior,
    inner_lip_sides,
    lip_opening,
    mouth_correspondence,
    polygon_mask,
    saturation,
)
from rendering.warp.rig_points import RigPoints

MAX_EYE_OPENING = 1.6  # eyes widen at most this much beyond the portrait's own opening


@dataclass(frozen=True)
class WarpSettings:
    """grid_cells: coarse-grid cells across the face box (the map is exact at the cells' centres); margin: the
    anchor square's extra width around the face box on each side, as a fraction of its side; anchors_per_side:
    fixed points on each side of that square; min_gap: facing lip and lid points of the portrait are pushed at
    least this far apart (fraction of the face side) so the triangulation keeps both."""

    grid_cells: int = 64
    margin: float = 0.15
    anchors_per_side: int = 8
    min_gap: float = 0.008


def _similarity(source: np.ndarray, target: np.ndarray) -> SimilarityTransform | None:
    """The least-squares similarity (Umeyama) taking source points onto target points; None when degenerate."""
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        fitted = SimilarityTransform.from_estimate(source, target)
        return fitted if fitted else None
    fitted = SimilarityTransform()
    return fitted if fitted.estimate(source, target) else None


def _anchor_square(box: CropBox, margin: float, per_side: int) -> np.ndarray:
    """(4 per_side, 2) points evenly around the square `box` widened by `margin` x side on each side."""
    left, top = box.left - margin * box.side, box.top - margin * box.side
    side = box.side * (1 + 2 * margin)
    steps = np.arange(per_side) / per_side * side
    return np.concatenate([np.stack([left + steps, np.full(per_side, top)], -1),
                           np.stack([np.full(per_side, left + side), top + steps], -1),
                           np.stack([left + side - steps, np.full(per_side, top + side)], -1),
                           np.stack([np.full(per_side, left), top + side - steps], -1)])


class PortraitWarp:
    """Animates `image` (H, W, 3) uint8 whose face has the 68 dlib `landmarks` (pixel indices) with the
    blendshapes of the rig whose control points are `rig` and whose frames `avatar` (a FaceRenderer) draws."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray, rig: RigPoints, avatar,
                 settings: WarpSettings = WarpSettings(), device: torch.device | str = "cpu") -> None:
        self.image, self.rig, self.avatar, self.settings = image, rig, avatar, settings
        self.device = torch.device(device)
        self.box = crop_box_from_landmarks(landmarks)
        points = interpolation_matrix() @ (np.asarray(landmarks, dtype=np.float64) + 0.5)  # continuous coordinates
        rest = rig.project(np.zeros((1, rig.deltas.shape[0])), avatar)[0]
        similarity = _similarity(rest[:NUM_LANDMARKS], points[:NUM_LANDMARKS])
        if similarity is None:
            raise ValueError("the portrait's landmarks are degenerate (no similarity maps the rig's onto them)")
        self.rig_to_portrait = similarity.params[:2, :2]  # rotation x scale: avatar pixels -> portrait pixels
        down = self.rig_to_portrait @ np.array([0.0, 1.0])
        self.down = down / np.linalg.norm(down)
        self.source_points = self._separate(points, settings.min_gap * self.box.side)
        anchors = _anchor_square(self.box, settings.margin, settings.anchors_per_side)
        height, width = image.shape[:2]
        outer = anchors.min(0), anchors.max(0)
        self.region = (max(int(np.ceil(outer[0][0])), 0), max(int(np.ceil(outer[0][1])), 0),
                       min(int(np.floor(outer[1][0])), width), min(int(np.floor(outer[1][1])), height))
        x0, y0, x1, y1 = self.region
        cells = settings.grid_cells * (1 + 2 * settings.margin) / self.box.side
        grid = (max(2, int(np.ceil((y1 - y0) * cells))), max(2, int(np.ceil((x1 - x0) * cells))))
        self.warp = MeshWarp(np.concatenate([self.source_points, anchors]), (x0, y0, x1, y1), grid, self.device)
        self.num_anchors = len(anchors)
        patch = torch.from_numpy(np.array(image[y0:y1, x0:x1])).to(self.device)
        self.patch = patch.permute(2, 0, 1)[None].float()
        ys, xs = torch.meshgrid(torch.arange(y0, y1, device=self.device) + 0.5,
                                torch.arange(x0, x1, device=self.device) + 0.5, indexing="ij")
        self.pixels = torch.stack([xs, ys], -1).float()
        face = patch[int(self.box.top - y0):, int(self.box.left - x0):][:int(self.box.side), :int(self.box.side)]
        self.chroma_scale = float(min(1.0, saturation(face.float()) / 40.0))  # ~40/255: a colour photo's skin

    def _separate(self, points: np.ndarray, gap: float) -> np.ndarray:
        """Facing points moved apart symmetrically along the face's down direction until `gap` separates them."""
        points = points.copy()
        for contour in CONTOUR_PAIRS:
            upper, lower = facing_pairs(contour)
            shortfall = np.maximum(gap - (points[lower] - points[upper]) @ self.down, 0)
            points[upper] -= 0.5 * shortfall[:, None] * self.down
            points[lower] += 0.5 * shortfall[:, None] * self.down
        return points

    def _bounds(self, points: torch.Tensor, margin: int = 2) -> tuple[slice, slice]:
        """Rows and columns of the region around (B, M, 2) points, widened by `margin` pixels."""
        x0, y0, x1, y1 = self.region
        low, high = points.reshape(-1, 2).min(0).values, points.reshape(-1, 2).max(0).values
        return (slice(max(int(low[1]) - margin - y0, 0), max(min(int(high[1]) + margin + 1 - y0, y1 - y0), 0)),
                slice(max(int(low[0]) - margin - x0, 0), max(min(int(high[0]) + margin + 1 - x0, x1 - x0), 0)))

    def targets(self, coeffs: np.ndarray, poses: np.ndarray | None = None,
                reference: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(T, N, 2) moved portrait control points and (T, N, 2) the rig's projected ones for (T, 52) blendshapes
        and optional (T, 6) head poses. The portrait moves as the rig moves away from `reference`, the (52,)
        blendshapes the portrait is taken to show (None: the neutral face), under the first frame's pose."""
        driving = self.rig.project(coeffs, self.avatar, poses)
        reference = np.zeros(self.rig.deltas.shape[0]) if reference is None else np.asarray(reference, np.float64)
        at_rest = self.rig.project(reference[None], self.avatar, None if poses is None else np.asarray(poses)[:1])
        moved = self.source_points + (driving - at_rest) @ self.rig_to_portrait.T
        for contour in EYELID_CONTOURS:  # each eye opens as the rig's does, in proportion to its own opening
            upper, lower = facing_pairs(contour)
            rig_gap = (driving[:, lower] - driving[:, upper])[..., 1].mean(-1)  # the avatar frame is upright
            rest_gap = (at_rest[:, lower] - at_rest[:, upper])[..., 1].mean(-1)
            ratio = np.clip(rig_gap / np.maximum(rest_gap, 1e-6), 0, MAX_EYE_OPENING)[:, None, None]
            middle = (moved[:, upper] + moved[:, lower]) / 2
            half_gap = 0.5 * (self.source_points[lower] - self.source_points[upper])
            moved[:, upper], moved[:, lower] = middle - ratio * half_gap, middle + ratio * half_gap
        for contour in CONTOUR_PAIRS:  # lids and lips may close but never cross
            upper, lower = facing_pairs(contour)
            overlap = np.minimum((moved[:, lower] - moved[:, upper]) @ self.down, 0)
            moved[:, upper] += 0.5 * overlap[..., None] * self.down
            moved[:, lower] -= 0.5 * overlap[..., None] * self.down
        return moved, driving

    @torch.no_grad()
    def render(self, coeffs: np.ndarray, avatar_frames, poses: np.ndarray | None = None,
               batch_size: int = 16, reference: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Yield (t, H, W, 3) uint8 chunks of the animated portrait; avatar_frames (T, S, S, 3) uint8 are the
        avatar renderer's frames of the same blendshapes and poses (the mouth interior comes from them);
        `reference` as in `targets`."""
        moved, driving = self.targets(coeffs, poses, reference)
        anchors = self.warp.source[-self.num_anchors:].cpu().numpy()
        x0, y0, x1, y1 = self.region
        down = torch.tensor(self.down, dtype=torch.float32, device=self.device)
        upper, lower = (torch.from_numpy(side).to(self.device) for side in inner_lip_sides())
        polygon = torch.from_numpy(inner_lip_polygon()).to(self.device)
        rest_opening = lip_opening(torch.from_numpy(self.source_points).float()[None].to(self.device), down)
        for start in range(0, len(moved), batch_size):
            stop = min(start + batch_size, len(moved))
            points = torch.from_numpy(np.concatenate(
                [moved[start:stop], np.broadcast_to(anchors, (stop - start,) + anchors.shape)], 1)).float()
            points = points.to(self.device)
            coarse, _ = self.warp.backward_map(points)
            # the displacement is upsampled, not the positions: it is zero wherever nothing moves, edges included
            displacement = coarse - self.warp.pixels.reshape(coarse.shape[1:])
            mapped = upsample(displacement, (y1 - y0, x1 - x0)) + self.pixels
            scale = torch.tensor([2 / (x1 - x0), 2 / (y1 - y0)], device=self.device)
            offset = torch.tensor([x0, y0], dtype=torch.float32, device=self.device)
            warped = F.grid_sample(self.patch.expand(len(points), -1, -1, -1), (mapped - offset) * scale - 1,
                                   mode="bilinear", padding_mode="border", align_corners=False).permute(0, 2, 3, 1)
            fade = ((lip_opening(points, down) - rest_opening) / (OPENING_FADE * self.box.side)).clamp(0, 1)
            if bool((fade > 0).any()):
                avatar = torch.as_tensor(np.asarray(avatar_frames[start:stop])).to(self.device)
                avatar = avatar.permute(0, 3, 1, 2).float()
                rig = torch.from_numpy(driving[start:stop]).float().to(self.device)
                rows, cols = self._bounds(points[:, polygon])
                pixels = self.pixels[rows, cols]
                mask = polygon_mask(points[:, polygon], pixels) * fade[:, None, None]
                at = mouth_correspondence(pixels.reshape(-1, 2), points[:, upper], points[:, lower], rig[:, upper],
                                          rig[:, lower]).reshape(*mask.shape, 2)
                warped[:, rows, cols] = draw_interior(warped[:, rows, cols], mask, at, avatar, self.chroma_scale)
            frames = np.repeat(self.image[None], stop - start, 0)
            frames[:, y0:y1, x0:x1] = warped.round().clamp(0, 255).to(torch.uint8).cpu().numpy()
            yield frames
