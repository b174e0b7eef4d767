"""face-vid2vid (Wang et al. 2021): appearance volume + canonical keypoints + head pose/expression -> warped,
decoded image.

Widths and depths come from the config; the defaults are the paper's 256-px model in the layout of the public
reimplementation's vox-256 config (see checkpoint_layout.py and docs/renderer.md for the key mapping).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.networks.face_vid2vid.appearance import AppearanceFeatureExtractor
from lightning_modules.networks.face_vid2vid.decoder import OcclusionAwareDecoder
from lightning_modules.networks.face_vid2vid.dense_motion import DenseMotionNetwork
from lightning_modules.networks.face_vid2vid.head_expression import HeadExpressionEstimator, transform_keypoints
from lightning_modules.networks.face_vid2vid.keypoints import CanonicalKeypointDetector


@dataclass
class SourceEncoding:
    """What the source gives once: feature volume, canonical keypoints, pose/expression and posed keypoints."""

    volume: torch.Tensor
    canonical: torch.Tensor
    head: dict[str, torch.Tensor]
    keypoints: torch.Tensor


class FaceVid2Vid(nn.Module):
    def __init__(self, image_size: int = 256, image_channels: int = 3, num_kp: int = 15, feature_channels: int = 32,
                 feature_depth: int = 16, generator: dict | None = None, kp_detector: dict | None = None,
                 he_estimator: dict | None = None, dense_motion: dict | None = None) -> None:
        super().__init__()
        generator = {"block_expansion": 64, "num_down_blocks": 2, "num_resblocks": 6, **(generator or {})}
        kp_detector = {"block_expansion": 32, "num_blocks": 5, "max_features": 1024, "volume_depth": 16,
                       "temperature": 0.1, "scale_factor": 0.25, **(kp_detector or {})}
        he_estimator = {"block_expansion": 64, "widths": (256, 512, 1024, 2048), "blocks": (3, 3, 5, 2),
                        "num_bins": 66, **(he_estimator or {})}
        dense_motion = {"block_expansion": 32, "num_blocks": 5, "max_features": 1024, "compress": 4,
                        "estimate_occlusion": True, **(dense_motion or {})}
        self.image_size, self.num_kp = image_size, num_kp
        self._check_sizes(image_size, generator, kp_detector, dense_motion)
        volume = {"feature_channels": feature_channels, "feature_depth": feature_depth}
        self.appearance = AppearanceFeatureExtractor(image_channels, **volume, **generator)
        self.kp_detector = CanonicalKeypointDetector(image_channels, num_kp, **kp_detector)
        self.he_estimator = HeadExpressionEstimator(image_channels, num_kp, **{
            **he_estimator, "widths": tuple(he_estimator["widths"]), "blocks": tuple(he_estimator["blocks"])})
        self.dense_motion = DenseMotionNetwork(num_kp, **volume, **dense_motion)
        self.decoder = OcclusionAwareDecoder(image_channels, **volume, **generator)

    @staticmethod
    def _check_sizes(size: int, generator: dict, kp_detector: dict, dense_motion: dict) -> None:
        volume_side = size // 2 ** generator["num_down_blocks"]
        kp_side = int(size * kp_detector["scale_factor"])
        problems = []
        if volume_side % 2 ** dense_motion["num_blocks"]:
            problems.append(f"the feature volume ({volume_side} px) does not halve {dense_motion['num_blocks']} "
                            "times in the dense motion hourglass")
        if kp_side % 2 ** kp_detector["num_blocks"]:
            problems.append(f"the keypoint detector's input ({kp_side} px) does not halve "
                            f"{kp_detector['num_blocks']} times")
        if problems:
            raise ValueError(f"face-vid2vid image_size={size}: " + "; ".join(problems))

    def encode_source(self, source: torch.Tensor) -> SourceEncoding:
        """(B, 3, H, W) in [0, 1]: the source's volume, canonical and posed keypoints."""
        canonical = self.kp_detector(source)
        head = self.he_estimator(source)
        return SourceEncoding(self.appearance(source), canonical, head, transform_keypoints(canonical, head))

    def driving_keypoints(self, canonical: torch.Tensor, driving: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Keypoints of the source identity in the driving frame's pose and expression (and the estimate itself)."""
        head = self.he_estimator(driving)
        return transform_keypoints(canonical, head), head

    def generate(self, volume: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> dict:
        """Warp the source volume from kp_source to kp_driving and decode: prediction (B, 3, H, W) in [0, 1], ..."""
        motion = self.dense_motion(volume, kp_source, kp_driving)
        deformation = motion["deformation"].to(volume.dtype)
        warped = F.grid_sample(volume, deformation, align_corners=False)
        prediction = self.decoder(warped, motion.get("occlusion"))
        return {"prediction": prediction, "occlusion": motion.get("occlusion"), "mask": motion["mask"],
                "deformation": deformation}

    def forward(self, source: torch.Tensor, driving: torch.Tensor) -> dict:
        """Reconstruct `driving` from `source` (absolute mode, as in training)."""
        encoded = self.encode_source(source)
        kp_driving, head_driving = self.driving_keypoints(encoded.canonical, driving)
        out = self.generate(encoded.volume, encoded.keypoints, kp_driving)
        out.update(kp_source=encoded.keypoints, kp_driving=kp_driving, kp_canonical=encoded.canonical,
                   head_driving=head_driving)
        return out
