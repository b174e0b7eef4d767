"""Dense motion network: K sparse keypoint flows -> one dense 3D flow field and an occlusion map
(Wang et al. 2021, Sec. 3.2).

Each keypoint k proposes the flow w_k(p) = p - x_d,k + x_s,k (source point seen at driving point p); an
hourglass over the warped, compressed features and keypoint heatmap differences predicts a softmax mask over
the K proposals plus the identity (background) flow, and a 2D occlusion map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.networks.face_vid2vid.blocks import Hourglass3d, coordinate_grid_3d, keypoint_gaussians

KEYPOINT_VARIANCE = 0.01


class DenseMotionNetwork(nn.Module):
    def __init__(self, num_kp: int = 15, feature_channels: int = 32, feature_depth: int = 16,
                 block_expansion: int = 32, num_blocks: int = 5, max_features: int = 1024, compress: int = 4,
                 estimate_occlusion: bool = True) -> None:
        super().__init__()
        self.num_kp = num_kp
        self.hourglass = Hourglass3d(block_expansion, (num_kp + 1) * (compress + 1), num_blocks, max_features)
        self.mask = nn.Conv3d(self.hourglass.out_channels, num_kp + 1, 7, padding=3)
        self.compress = nn.Conv3d(feature_channels, compress, 1)
        self.norm = nn.BatchNorm3d(compress)
        self.occlusion = (nn.Conv2d(self.hourglass.out_channels * feature_depth, 1, 7, padding=3)
                          if estimate_occlusion else None)

    def sparse_motions(self, shape: tuple[int, int, int], kp_source: torch.Tensor,
                       kp_driving: torch.Tensor) -> torch.Tensor:
        """(B, K+1, D, H, W, 3) sampling grids: the identity, then p - x_d,k + x_s,k for each keypoint."""
        identity = coordinate_grid_3d(*shape, like=kp_source)[None, None]
        shift = (kp_source - kp_driving)[:, :, None, None, None, :]
        per_kp = identity + shift
        return torch.cat([identity.expand(kp_source.shape[0], 1, *identity.shape[2:]), per_kp], dim=1)

    def forward(self, feature: torch.Tensor, kp_source: torch.Tensor,
                kp_driving: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, d, h, w = feature.shape
        feature = F.relu(self.norm(self.compress(feature)))
        motions = self.sparse_motions((d, h, w), kp_source, kp_driving)  # (B, K+1, D, H, W, 3)
        k1 = self.num_kp + 1
        repeated = feature[:, None].expand(b, k1, *feature.shape[1:]).reshape(b * k1, -1, d, h, w)
        warped = F.grid_sample(repeated, motions.reshape(b * k1, d, h, w, 3).to(feature.dtype),
                               align_corners=False).view(b, k1, -1, d, h, w)
        heat = (keypoint_gaussians(kp_driving, (d, h, w), KEYPOINT_VARIANCE)
                - keypoint_gaussians(kp_source, (d, h, w), KEYPOINT_VARIANCE))
        heat = torch.cat([heat.new_zeros(b, 1, d, h, w), heat], dim=1)[:, :, None].to(warped.dtype)
        prediction = self.hourglass(torch.cat([heat, warped], dim=2).view(b, -1, d, h, w))
        mask = F.softmax(self.mask(prediction), dim=1)  # (B, K+1, D, H, W)
        deformation = (motions * mask[..., None]).sum(dim=1)  # (B, D, H, W, 3)
        out = {"mask": mask, "deformation": deformation}
        if self.occlusion is not None:
            out["occlusion"] = torch.sigmoid(self.occlusion(prediction.reshape(b, -1, h, w)))
        return out
