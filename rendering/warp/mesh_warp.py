"""A piecewise-affine image warp over a fixed triangulation, batched on torch.

The control points of the source image are triangulated once (scipy.spatial.Delaunay). Each frame moves them;
the backward map (output pixel -> source position) is found per pixel of a coarse grid by locating the pixel in
the moved triangles and interpolating the source corners with its barycentric coordinates. Locating walks from
the pixel's triangle in the source (its position before the move) to the neighbour across the edge it lies beyond
(a visibility walk; the moves are small against the triangles, so a few steps suffice), all pixels and frames at
once. The coarse map is upsampled bilinearly and `torch.nn.functional.grid_sample` does the resampling, so the
same code runs on a GPU. Triangles that collapse (a closed eye) simply cover no pixel; triangles that open
(between parted lips) cover pixels whose source is the thin strip they came from.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.spatial import Delaunay

INSIDE_TOLERANCE = 1e-4
MAX_WALK_STEPS = 32


class MeshWarp:
    """Backward maps of a triangulated set of source points (N, 2) over a rectangle sampled on a coarse grid.

    extent (x0, y0, x1, y1): the output rectangle in the points' coordinates (continuous: pixel i spans [i, i+1));
    grid (rows, cols): the coarse grid the map is computed on (pixel centres of the rectangle split that way).
    The points' hull must cover the rectangle (give fixed anchors around it).
    """

    def __init__(self, source: np.ndarray, extent: tuple[float, float, float, float], grid: tuple[int, int],
                 device: torch.device | str = "cpu") -> None:
        source = np.asarray(source, dtype=np.float64)
        delaunay = Delaunay(source, qhull_options="QJ")  # joggled: points that (nearly) coincide stay vertices
        self.device = torch.device(device)
        self.extent, self.grid = extent, grid
        x0, y0, x1, y1 = extent
        rows, cols = grid
        xs = x0 + (np.arange(cols) + 0.5) * (x1 - x0) / cols
        ys = y0 + (np.arange(rows) + 0.5) * (y1 - y0) / rows
        pixels = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
        start = delaunay.find_simplex(pixels)
        if (start < 0).any():
            raise ValueError("the control points' hull does not cover the warped rectangle")
        neighbours = delaunay.neighbors.copy()
        stay = neighbours < 0  # across the hull: stay where you are
        neighbours[stay] = np.repeat(np.arange(len(neighbours))[:, None], 3, 1)[stay]
        self.triangles = torch.from_numpy(delaunay.simplices.astype(np.int64)).to(self.device)
        self.neighbours = torch.from_numpy(neighbours.astype(np.int64)).to(self.device)
        self.source = torch.from_numpy(source).float().to(self.device)
        self.pixels = torch.from_numpy(pixels).float().to(self.device)
        self.start = torch.from_numpy(start.astype(np.int64)).to(self.device)

    @property
    def num_triangles(self) -> int:
        return len(self.triangles)

    @staticmethod
    def _barycentric(corners: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """(..., 3) barycentric coordinates of (..., 2) pixels in triangles with (..., 3, 2) corners."""
        a, b, c = corners.unbind(-2)
        v0, v1, v2 = b - a, c - a, pixels - a
        det = v0[..., 0] * v1[..., 1] - v1[..., 0] * v0[..., 1]
        det = torch.where(det.abs() < 1e-9, torch.full_like(det, 1e-9), det)  # a collapsed triangle holds nothing
        lb = (v2[..., 0] * v1[..., 1] - v1[..., 0] * v2[..., 1]) / det
        lc = (v0[..., 0] * v2[..., 1] - v2[..., 0] * v0[..., 1]) / det
        return torch.stack([1 - lb - lc, lb, lc], -1)

    def locate(self, moved: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Triangle (B, P) and barycentric coordinates (B, P, 3) of every grid pixel among the moved points.

        Only the pixels still outside their triangle take the next step; a pixel that has not arrived after
        MAX_WALK_STEPS (it circles between folded triangles) keeps its last triangle, its coordinates clamped.
        """
        frames, count = len(moved), len(self.pixels)
        triangle = self.start.repeat(frames)
        weights = torch.empty(frames * count, 3, device=self.device)
        frame = torch.arange(frames, device=self.device).repeat_interleave(count)
        pixels = self.pixels.repeat(frames, 1)
        active = torch.arange(frames * count, device=self.device)
        flat = moved.reshape(-1, 2)
        vertices = moved.shape[1]
        for _ in range(MAX_WALK_STEPS):
            current = triangle[active]
            corners = flat[(frame[active, None] * vertices + self.triangles[current]).reshape(-1)].reshape(-1, 3, 2)
            found = self._barycentric(corners, pixels[active])
            weights[active] = found
            lowest, corner = found.min(-1)
            outside = lowest < -INSIDE_TOLERANCE
            active, current, corner = active[outside], current[outside], corner[outside]
            if len(active) == 0:
                break
            triangle[active] = self.neighbours[current, corner]
        weights = weights.clamp(min=0)
        weights = weights / weights.sum(-1, keepdim=True).clamp(min=1e-9)
        return triangle.reshape(frames, count), weights.reshape(frames, count, 3)

    def backward_map(self, moved: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For moved points (B, N, 2): source positions (B, rows, cols, 2) of the coarse grid and its triangles."""
        triangle, weights = self.locate(moved.to(self.device).float())
        corners = self.source[self.triangles[triangle]]  # (B, P, 3, 2)
        mapped = (weights[..., None] * corners).sum(-2)
        rows, cols = self.grid
        return mapped.reshape(len(moved), rows, cols, 2), triangle.reshape(len(moved), rows, cols)


def upsample(coarse: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, rows, cols, C) grid values -> (B, H, W, C), bilinear over pixel centres."""
    return F.interpolate(coarse.permute(0, 3, 1, 2), size=size, mode="bilinear",
                         align_corners=False).permute(0, 2, 3, 1)
