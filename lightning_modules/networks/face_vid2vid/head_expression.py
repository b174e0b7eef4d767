"""Head pose and expression estimator, and the keypoint transformation x = R x_c + t + delta (Wang et al. 2021, Eq. 1).

Angles are classified into 66 bins of 3 degrees (Hopenet, Ruiz et al. 2018): degrees = 3 E[bin] - 99.
R = R_pitch(x) R_yaw(y) R_roll(z), the order of the public reimplementation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.networks.face_vid2vid.blocks import ResBottleneck, degrees_to_radians

BIN_DEGREES = 3.0
BIN_OFFSET_DEGREES = 99.0


class HeadExpressionEstimator(nn.Module):
    """ResNet-50-like trunk -> yaw/pitch/roll bin logits, translation (3) and per-keypoint expression deltas (K x 3).

    widths: the four stages' widths; blocks: the plain bottlenecks per stage (stages 2-4 add one strided one).
    """

    def __init__(self, image_channels: int = 3, num_kp: int = 15, block_expansion: int = 64,
                 widths: tuple[int, ...] = (256, 512, 1024, 2048), blocks: tuple[int, ...] = (3, 3, 5, 2),
                 num_bins: int = 66) -> None:
        super().__init__()
        if len(widths) != 4 or len(blocks) != 4:
            raise ValueError(f"widths and blocks need four stages, got {widths} and {blocks}")
        self.num_kp, self.num_bins = num_kp, num_bins
        self.conv1 = nn.Conv2d(image_channels, block_expansion, 7, padding=3, stride=2)
        self.norm1 = nn.BatchNorm2d(block_expansion)
        self.conv2, self.norm2 = nn.Conv2d(block_expansion, widths[0], 1), nn.BatchNorm2d(widths[0])
        self.block1 = nn.Sequential()
        for i in range(blocks[0]):
            self.block1.add_module(f"b1_{i}", ResBottleneck(widths[0], 1))
        # Stages 2-4, named as the public checkpoint names them: a 1x1 widening conv (conv3/4/5), one strided
        # bottleneck (block2/4/6), then blocks[stage] plain bottlenecks (block3/5/7).
        for stage, (conv, strided, plain) in enumerate((("conv3", "block2", "block3"), ("conv4", "block4", "block5"),
                                                        ("conv5", "block6", "block7")), start=1):
            index = conv[-1]
            setattr(self, conv, nn.Conv2d(widths[stage - 1], widths[stage], 1))
            setattr(self, f"norm{index}", nn.BatchNorm2d(widths[stage]))
            setattr(self, strided, ResBottleneck(widths[stage], 2))
            plain_blocks = nn.Sequential()
            for i in range(blocks[stage]):
                plain_blocks.add_module(f"b{plain[-1]}_{i}", ResBottleneck(widths[stage], 1))
            setattr(self, plain, plain_blocks)
        self.fc_yaw = nn.Linear(widths[3], num_bins)
        self.fc_pitch = nn.Linear(widths[3], num_bins)
        self.fc_roll = nn.Linear(widths[3], num_bins)
        self.fc_t = nn.Linear(widths[3], 3)
        self.fc_exp = nn.Linear(widths[3], 3 * num_kp)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        out = F.max_pool2d(F.relu(self.norm1(self.conv1(image))), 3, stride=2, padding=1)
        out = self.block1(F.relu(self.norm2(self.conv2(out))))
        out = self.block3(self.block2(F.relu(self.norm3(self.conv3(out)))))
        out = self.block5(self.block4(F.relu(self.norm4(self.conv4(out)))))
        out = self.block7(self.block6(F.relu(self.norm5(self.conv5(out)))))
        out = out.mean(dim=(2, 3))
        return {"yaw": self.fc_yaw(out), "pitch": self.fc_pitch(out), "roll": self.fc_roll(out),
                "t": self.fc_t(out), "exp": self.fc_exp(out).view(-1, self.num_kp, 3)}


def bins_to_degrees(logits: torch.Tensor) -> torch.Tensor:
    """(B, bins) logits -> (B,) degrees, the expectation over 3-degree bins starting at -99."""
    index = torch.arange(logits.shape[-1], device=logits.device, dtype=torch.float32)
    return (F.softmax(logits.float(), dim=-1) * index).sum(-1) * BIN_DEGREES - BIN_OFFSET_DEGREES


def angles_from_rig(rig_degrees: torch.Tensor) -> torch.Tensor:
    """(..., 3) yaw, pitch, roll of rendering.gl_renderer (x to the viewer's right, y up, z towards the camera) ->
    this estimator's (x right, y down, z away: grid_sample's axes): the same rotation has yaw and roll negated.

    The rig composes R_y R_x R_z and this model R_x R_y R_z: the two agree to first order in the angles.
    """
    return rig_degrees * rig_degrees.new_tensor([-1.0, 1.0, -1.0])


def estimated_angles(head: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, 3) yaw, pitch, roll in degrees of the estimator's output."""
    return torch.stack([bins_to_degrees(head[k]) for k in ("yaw", "pitch", "roll")], -1)


def rotation_matrix(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) R = R_x(pitch) R_y(yaw) R_z(roll) from angles in degrees."""
    y, p, r = (degrees_to_radians(a.float()) for a in (yaw, pitch, roll))
    one, zero = torch.ones_like(y), torch.zeros_like(y)
    rx = torch.stack([one, zero, zero, zero, p.cos(), -p.sin(), zero, p.sin(), p.cos()], -1).view(-1, 3, 3)
    ry = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], -1).view(-1, 3, 3)
    rz = torch.stack([r.cos(), -r.sin(), zero, r.sin(), r.cos(), zero, zero, zero, one], -1).view(-1, 3, 3)
    return rx @ ry @ rz


def transform_keypoints(canonical: torch.Tensor, head: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, K, 3) posed keypoints R x_c + t + delta from canonical keypoints and the estimator's output."""
    rotation = rotation_matrix(bins_to_degrees(head["yaw"]), bins_to_degrees(head["pitch"]),
                               bins_to_degrees(head["roll"])).to(canonical.dtype)
    return canonical @ rotation.transpose(1, 2) + head["t"][:, None, :] + head["exp"]
