"""Random affine + thin-plate-spline warps for the equivariance loss (FOMM, Siarohin et al. 2019, Sec. 3.3):
keypoints of a warped image, mapped back through the warp, must equal the keypoints of the image."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lightning_modules.networks.face_vid2vid.blocks import coordinate_grid_2d


class RandomWarp:
    """theta (affine, identity + N(0, sigma_affine)) plus a TPS on a points x points grid (weights N(0, sigma_tps)).

    warp_coordinates maps (B, N, 2) points in [-1, 1] of the *warped* image to the original image; transform_frame
    samples the original at those points, so a point at p in the warped frame shows what was at warp(p).
    """

    def __init__(self, batch: int, sigma_affine: float = 0.05, sigma_tps: float = 0.005, points_tps: int = 5,
                 generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> None:
        noise = torch.randn(batch, 2, 3, generator=generator) * sigma_affine
        self.theta = (noise + torch.eye(2, 3)[None]).to(device)
        self.control = coordinate_grid_2d(points_tps, points_tps, like=torch.zeros(1)).view(1, -1, 2).to(device)
        self.params = (torch.randn(batch, 1, points_tps**2, generator=generator) * sigma_tps).to(device)
        self.batch = batch

    def warp_coordinates(self, points: torch.Tensor) -> torch.Tensor:
        theta = self.theta.to(points.dtype)
        out = points @ theta[:, :, :2].transpose(1, 2) + theta[:, None, :, 2]
        distances = (points[:, :, None, :] - self.control.to(points.dtype)[:, None]).abs().sum(-1)
        radial = distances**2 * torch.log(distances + 1e-6) * self.params.to(points.dtype)
        return out + radial.sum(-1, keepdim=True)

    def transform_frame(self, frame: torch.Tensor) -> torch.Tensor:
        b, _, h, w = frame.shape
        grid = coordinate_grid_2d(h, w, like=frame).view(1, h * w, 2).expand(b, -1, -1)
        warped = self.warp_coordinates(grid).view(b, h, w, 2)
        return F.grid_sample(frame, warped, padding_mode="reflection", align_corners=False)
