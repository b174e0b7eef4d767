"""The face-vid2vid training losses other than the perceptual one (Wang et al. 2021, Sec. 3.3 and App. A.2):
GAN (hinge or least squares, multi-scale patch discriminator), discriminator feature matching, keypoint prior,
deformation (expression) prior, plus the image pyramid they share."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.networks.face_vid2vid.blocks import AntiAliasDownsample
from lightning_modules.networks.face_vid2vid.discriminator import scale_key

GAN_MODES = ("hinge", "ls")


class ImagePyramid(nn.Module):
    """{scale: the image band-limited and downsampled by scale} for the given scales."""

    def __init__(self, scales: tuple[float, ...], image_channels: int = 3) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.downs = nn.ModuleDict({scale_key(s): AntiAliasDownsample(image_channels, s) for s in self.scales})

    def forward(self, image: torch.Tensor) -> dict[float, torch.Tensor]:
        return {s: self.downs[scale_key(s)](image) for s in self.scales}


def generator_gan_loss(logits: list[torch.Tensor], mode: str) -> torch.Tensor:
    """Hinge: -mean D(G); least squares: mean (1 - D(G))^2; summed over scales."""
    if mode == "hinge":
        return sum(-x.mean() for x in logits)
    if mode == "ls":
        return sum(((1 - x) ** 2).mean() for x in logits)
    raise ValueError(f"gan_mode must be one of {GAN_MODES}, got {mode!r}")


def discriminator_gan_loss(real: list[torch.Tensor], fake: list[torch.Tensor], mode: str) -> torch.Tensor:
    """Hinge: mean relu(1 - D(x)) + mean relu(1 + D(G)); least squares: mean (1 - D(x))^2 + mean D(G)^2."""
    if mode == "hinge":
        return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake))
    if mode == "ls":
        return sum(((1 - r) ** 2).mean() + (f**2).mean() for r, f in zip(real, fake))
    raise ValueError(f"gan_mode must be one of {GAN_MODES}, got {mode!r}")


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]],
                          layer_weights: tuple[float, ...]) -> torch.Tensor:
    """sum over scales and discriminator layers of weight x mean |D_l(real) - D_l(generated)| (pix2pixHD)."""
    total = fake[0][0].new_zeros(())
    for real_maps, fake_maps in zip(real, fake):
        for weight, r, f in zip(layer_weights, real_maps, fake_maps):
            if weight:
                total = total + weight * (r.detach() - f).abs().mean()
    return total


def keypoint_prior_loss(keypoints: torch.Tensor, min_distance: float = 0.1, depth: float = 0.33) -> torch.Tensor:
    """sum_{i,j} mean max(0, D_t - |x_i - x_j|^2) + |mean_k z_k - z_t|: keypoints spread out, at a set mean depth."""
    squared = torch.cdist(keypoints.float(), keypoints.float()) ** 2  # (B, K, K), the diagonal included as the paper
    spread = F.relu(min_distance - squared).mean(0).sum()
    return spread + (keypoints[..., 2].float().mean(-1) - depth).abs().mean()


def head_pose_loss(estimated: torch.Tensor, reference: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean |estimated - reference| in degrees over the (B, 3) angles of the frames with a reference (Wang et al. 2021,
    L_H; the reference is a head pose track here, where the paper uses a pretrained Hopenet)."""
    return (estimated.float() - reference.float())[valid].abs().mean()


def deformation_prior_loss(expression: torch.Tensor) -> torch.Tensor:
    """Mean over keypoints of the L1 norm of the expression deltas (B, K, 3): deformations stay small."""
    return expression.abs().sum(-1).mean()
