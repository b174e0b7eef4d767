"""ArcFace identity embeddings: insightface's iresnet100 backbone on 112x112 crops aligned by five landmarks.

The architecture reproduces insightface `recognition/arcface_torch` iresnet100 (same state_dict keys, so its published
`backbone.pth` loads with strict=True). Those weights are licensed for non-commercial research only and cannot be
fetched here: they are read from a configured path and checked against a configured sha256; no published digest is
recorded in this repository, so the lab pins the digest of the file it downloaded. Nothing is downloaded and no random
weights stand in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from skimage.transform import SimilarityTransform, warp
from torch import nn

from dtl_foundation.media.face_detect import LEFT_EYE, MOUTH_CORNERS, NOSE_TIP, RIGHT_EYE, FaceLandmarker, as_rgb_uint8
from dtl_foundation.weights import WeightsError, WeightsFile, verified_path

ARCFACE_CROP = 112
# insightface's reference positions of (left eye, right eye, nose tip, left mouth corner, right mouth corner) in a
# 112x112 crop, "left" meaning the image's left.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
IRESNET100_LAYERS = (3, 13, 30, 3)
ARCFACE_DEFAULT_FILENAME = "ms1mv3_arcface_r100_fp16_backbone.pth"
ARCFACE_SOURCE = (
    "https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch "
    "(model zoo: ms1mv3_arcface_r100_fp16/backbone.pth)"
)
ARCFACE_LICENCE = "insightface pretrained models: non-commercial research use only"


class _IBasicBlock(nn.Module):
    """Pre-activation residual block: BN, 3x3 conv, BN, PReLU, 3x3 conv (carries the stride), BN, plus shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=1e-5)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-5)
        self.prelu = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels, eps=1e-5)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels, eps=1e-5)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class IResNet(nn.Module):
    """insightface's IResNet: (B, 3, 112, 112) RGB in [-1, 1] -> (B, 512) embedding (not normalised)."""

    def __init__(self, layers: tuple[int, ...] = IRESNET100_LAYERS, num_features: int = 512) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        widths = (64, 128, 256, 512)
        in_channels = 64
        for index, (width, depth) in enumerate(zip(widths, layers), start=1):
            blocks = [_IBasicBlock(in_channels, width, stride=2)]
            blocks += [_IBasicBlock(width, width, stride=1) for _ in range(depth - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
            in_channels = width
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-3:] != (3, ARCFACE_CROP, ARCFACE_CROP):
            raise ValueError(f"IResNet takes (B, 3, 112, 112) aligned face crops, got {tuple(x.shape)}")
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


@dataclass(frozen=True)
class ConfiguredWeightsFile(WeightsFile):
    """A weight file at a path and sha256 that the configuration gives (for weights with no recorded digest)."""

    location: Path = field(default_factory=Path)

    @property
    def path(self) -> Path:
        return self.location

    def how_to_obtain(self) -> str:
        return (
            f"Download it from {self.url}, save it as {self.location} (or configure its path) and configure the "
            f"sha256 you recorded for it. Licence: {self.licence}"
        )


def default_arcface_path() -> Path:
    """Where the ArcFace backbone is looked for when no path is configured: torch.hub's checkpoint cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ARCFACE_DEFAULT_FILENAME


def arcface_weights_file(path: str | Path | None, sha256: str | None) -> ConfiguredWeightsFile:
    """The registry-style entry for a configured ArcFace backbone file; the sha256 is required."""
    if not sha256 or len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256.lower()):
        raise WeightsError(
            f"ArcFace iresnet100 weights need a configured sha256 (64 hex digits), got {sha256!r}: no published "
            f"digest is recorded here, so pin the one of the file you downloaded "
            f"(`sha256sum {path or default_arcface_path()}`). Source: {ARCFACE_SOURCE}. Licence: {ARCFACE_LICENCE}"
        )
    return ConfiguredWeightsFile(
        name="arcface_iresnet100",
        description="ArcFace iresnet100 backbone (insightface arcface_torch)",
        filename=Path(path).name if path else ARCFACE_DEFAULT_FILENAME,
        sha256=sha256.lower(),
        url=ARCFACE_SOURCE,
        licence=ARCFACE_LICENCE,
        location=Path(path) if path else default_arcface_path(),
    )


def pretrained_iresnet100(path: str | Path | None, sha256: str | None) -> IResNet:
    """IResNet-100 with the verified insightface weights, in eval mode; raises MissingWeightsError when absent."""
    weights_path = verified_path(arcface_weights_file(path, sha256))
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    model = IResNet()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise WeightsError(f"{weights_path} is not an insightface iresnet100 state_dict: {error}") from error
    return model.eval().requires_grad_(False)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """(5, 2) eye centres, nose tip and mouth corners from dlib's 68 landmarks, in ArcFace's template order."""
    return np.stack(
        [
            landmarks[LEFT_EYE].mean(0),
            landmarks[RIGHT_EYE].mean(0),
            landmarks[NOSE_TIP],
            landmarks[MOUTH_CORNERS[0]],
            landmarks[MOUTH_CORNERS[1]],
        ]
    )


def align_arcface_crop(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(112, 112, 3) float RGB in [0, 1]: the similarity transform taking the five points onto ArcFace's template."""
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26 deprecates estimate()
        transform = SimilarityTransform.from_estimate(points, ARCFACE_TEMPLATE)
    else:
        transform = SimilarityTransform()
        transform = transform if transform.estimate(points, ARCFACE_TEMPLATE) else None
    if not transform:
        raise ValueError(f"cannot fit a similarity transform to the five face points {points.tolist()}")
    return warp(image, transform.inverse, output_shape=(ARCFACE_CROP, ARCFACE_CROP), order=1, mode="constant")


class ArcFaceDescriptor:
    """Unit-norm 512-d ArcFace embedding of the best face in an RGB frame, or None when dlib finds no face."""

    def __init__(self, backbone: nn.Module, landmarker: FaceLandmarker | None = None) -> None:
        self.backbone = backbone.eval()
        self.landmarker = landmarker or FaceLandmarker()

    def __call__(self, image: np.ndarray | torch.Tensor) -> np.ndarray | None:
        rgb = as_rgb_uint8(image)
        face = self.landmarker.detect(rgb)
        if face is None:
            return None
        crop = torch.from_numpy(align_arcface_crop(rgb, five_points(face.landmarks))).float()
        batch = crop.permute(2, 0, 1)[None].sub(0.5).div(0.5)
        parameter = next(self.backbone.parameters())
        with torch.no_grad():
            embedding = self.backbone(batch.to(parameter.device, parameter.dtype))[0].double().cpu().numpy()
        return embedding / np.linalg.norm(embedding)
