"""SyncNet v2 (joonson/syncnet_python) and the LSE-C / LSE-D lip-sync scores it defines, batched on the device.

Facts from the reference (syncnet_python's SyncNetModel / SyncNetInstance): the lip tower sees 5 consecutive 224 x 224
face crops (BGR, 0-255 floats), the audio tower 20 MFCC columns (python_speech_features defaults on int16 16 kHz audio,
4 columns per video frame at 25 fps); window v pairs frames v..v+4 with MFCC columns 4v..4v+19, for
v < min(frames, samples // 640) - 5 (the reference's count, one window short of what the data allow). The audio
embeddings are zero-padded by 15 rows at both ends; the distance of window v at shift k is
pairwise_distance(lip[v], audio_padded[v + k]) (eps 1e-6), the mean over windows gives one distance per offset
-15..15, LSE-D = the minimum, LSE-C = median - minimum, AV offset = 15 - argmin.
The reference assembles each batch of windows and each window's distances in Python loops; here the frames of a
window are stacked as 15 channels so that every layer is a 2-D convolution (the later 3-D kernels span one frame), the
batch norms are folded into the convolutions, all windows go through in batches and all offsets are one tensor
operation.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights
from torchmetrics import Metric

from dtl_foundation.media.mfcc import MAX_OFFSET, MFCC_PER_FRAME, MFCC_WINDOW, WINDOW_FRAMES, syncnet_mfcc_torch
from dtl_foundation.weights import WeightsError, resolve_weights

VIDEO_FPS = 25
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // VIDEO_FPS
CROP_SIZE = 224
EMBEDDING_DIM = 1024
DISTANCE_EPS = 1e-6  # torch.nn.functional.pairwise_distance's default, which the reference relies on
CHANNEL_ORDERS = ("rgb", "bgr")


class FrozenBatchNorm(nn.Module):
    """Inference-only batch norm over dim 1 of any rank; state weight/bias/running_mean/running_var only.

    syncnet_v2.model predates BatchNorm's num_batches_tracked counter, so the module has none and ignores one if a
    newer state dict carries it.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(channels))
        self.register_buffer("bias", torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return x * scale.view(shape) + shift.view(shape)


class StackedFramesConv(nn.Conv3d):
    """A Conv3d's parameters applied as a 2-D convolution to (B, in_channels * frames, H, W) input.

    The input stacks the frames of a clip as channels c * frames + t (a plain reshape of (B, C, T, H, W)); the
    temporal kernel must span all of them, so the output has one frame and stays 2-D.
    """

    def __init__(self, in_channels: int, out_channels: int, frames: int, kernel: int, stride: int = 1,
                 padding: int = 0) -> None:
        super().__init__(in_channels, out_channels, kernel_size=(frames, kernel, kernel), stride=(1, stride, stride),
                         padding=(0, padding, padding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.flatten(1, 2), self.bias, self.stride[1:], self.padding[1:])


def _fc_head() -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), FrozenBatchNorm(512), nn.ReLU(), nn.Linear(512, EMBEDDING_DIM))


class SyncNet(nn.Module):
    """SyncNet v2; its state_dict has exactly the keys and shapes of syncnet_v2.model (88 tensors).

    Layer positions in each nn.Sequential match the reference's, including its parameter-free layers, since the keys
    carry them (netcnnaud.3 is the reference's 1 x 1 max pool, an identity).
    """

    def __init__(self) -> None:
        super().__init__()
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, 64, 3, padding=1), FrozenBatchNorm(64), nn.ReLU(), nn.Identity(),
            nn.Conv2d(64, 192, 3, padding=1), FrozenBatchNorm(192), nn.ReLU(), nn.MaxPool2d(3, stride=(1, 2)),
            nn.Conv2d(192, 384, 3, padding=1), FrozenBatchNorm(384), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), FrozenBatchNorm(256), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), FrozenBatchNorm(256), nn.ReLU(), nn.MaxPool2d(3, stride=2),
            nn.Conv2d(256, 512, (5, 4)), FrozenBatchNorm(512), nn.ReLU(),
        )
        self.netfcaud = _fc_head()
        self.netfclip = _fc_head()
        self.netcnnlip = nn.Sequential(
            StackedFramesConv(3, 96, WINDOW_FRAMES, 7, stride=2), FrozenBatchNorm(96), nn.ReLU(), nn.MaxPool2d(3, 2),
            StackedFramesConv(96, 256, 1, 5, stride=2, padding=1), FrozenBatchNorm(256), nn.ReLU(),
            nn.MaxPool2d(3, 2, padding=1),
            StackedFramesConv(256, 256, 1, 3, padding=1), FrozenBatchNorm(256), nn.ReLU(),
            StackedFramesConv(256, 256, 1, 3, padding=1), FrozenBatchNorm(256), nn.ReLU(),
            StackedFramesConv(256, 256, 1, 3, padding=1), FrozenBatchNorm(256), nn.ReLU(), nn.MaxPool2d(3, 2),
            StackedFramesConv(256, 512, 1, 6), FrozenBatchNorm(512), nn.ReLU(),
        )

    def embed_audio(self, mfcc_windows: torch.Tensor) -> torch.Tensor:
        """(B, 1, 13, 20) MFCC windows -> (B, 1024), the reference's forward_aud."""
        return self.netfcaud(self.netcnnaud(mfcc_windows).flatten(1))

    def embed_lips(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, 3, 5, 224, 224) BGR 0-255 clips -> (B, 1024), the reference's forward_lip."""
        batch, channels, frames, height, width = clips.shape
        stacked = clips.reshape(batch, channels * frames, height, width)
        return self.netfclip(self.netcnnlip(stacked).flatten(1))


def load_syncnet(path: str | os.PathLike) -> SyncNet:
    """SyncNet with the state dict in `path` (syncnet_v2.model's format); a file of other tensors fails naming it."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"{path}: not a loadable PyTorch state dict ({type(error).__name__}: {error})") from error
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: expected a SyncNet state dict, found a {type(state).__name__}")
    net = SyncNet()
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise WeightsError(f"{path}: not a SyncNet v2 state dict: {error}") from None
    return net.eval()


def pretrained_syncnet() -> SyncNet:
    """SyncNet on the registry-verified syncnet_v2.model; raises MissingWeightsError (never downloads) when absent."""
    return load_syncnet(resolve_weights("syncnet_v2"))


def _fold(layers: nn.Sequential, input_channel_order: list[int] | None = None) -> nn.Sequential:
    """The same layers as plain 2-D convolutions / linear layers with each batch norm folded into the layer before it.

    input_channel_order: a permutation of the first convolution's input channels (before frame stacking).
    """
    modules = list(layers)
    folded: list[nn.Module] = []
    for index, module in enumerate(modules):
        following = modules[index + 1] if index + 1 < len(modules) else None
        norm = following if isinstance(following, FrozenBatchNorm) else None
        if isinstance(module, FrozenBatchNorm):
            if not isinstance(modules[index - 1], (nn.Conv2d, nn.Conv3d, nn.Linear)):
                raise ValueError(f"cannot fold {module} that follows {modules[index - 1]}")
        elif isinstance(module, (nn.Conv2d, nn.Conv3d)):
            weight = module.weight.detach()
            if not folded and input_channel_order is not None:
                weight = weight[:, input_channel_order]
            if isinstance(module, StackedFramesConv):
                weight = weight.flatten(1, 2)
            conv = nn.Conv2d(weight.shape[1], weight.shape[0], tuple(weight.shape[2:]),
                             stride=tuple(module.stride[-2:]), padding=tuple(module.padding[-2:]))
            conv.weight, conv.bias = _fused(fuse_conv_bn_weights, weight, module.bias.detach(), norm)
            folded.append(conv)
        elif isinstance(module, nn.Linear):
            linear = nn.Linear(module.in_features, module.out_features)
            linear.weight, linear.bias = _fused(fuse_linear_bn_weights, module.weight.detach(), module.bias.detach(),
                                                norm)
            folded.append(linear)
        elif isinstance(module, nn.ReLU):
            folded.append(nn.ReLU(inplace=True))
        elif not isinstance(module, nn.Identity):
            folded.append(copy.deepcopy(module))  # never share a module with `layers`: .to() would move both
    # ReLU then max-pool equals max-pool then ReLU (ReLU is monotone); pooling first rectifies 4x fewer values.
    for index in range(len(folded) - 1):
        if isinstance(folded[index], nn.ReLU) and isinstance(folded[index + 1], nn.MaxPool2d):
            folded[index], folded[index + 1] = folded[index + 1], folded[index]
    return nn.Sequential(*folded).requires_grad_(False)


def _fused(fuse, weight: torch.Tensor, bias: torch.Tensor, norm: FrozenBatchNorm | None):
    """(weight, bias) as Parameters, with `norm` folded in by torch's fusion helper when there is one."""
    if norm is None:
        return nn.Parameter(weight.clone(), requires_grad=False), nn.Parameter(bias.clone(), requires_grad=False)
    return fuse(weight, bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias)


@dataclass(frozen=True)
class LipSyncScore:
    """One video's SyncNet scores: LSE-C, LSE-D, the AV offset in frames and the mean distance per offset."""

    lse_c: float
    lse_d: float
    offset: int
    mean_distances: torch.Tensor
    """(2 * max_offset + 1,): entry k averages |lip[v] - audio[v + k - max_offset]|; offset = max_offset - argmin."""
    num_windows: int


def offset_distances(lip: torch.Tensor, audio: torch.Tensor, max_offset: int = MAX_OFFSET,
                     chunk: int = 512) -> torch.Tensor:
    """(W, 2 * max_offset + 1) distances between lip[v] and audio[v + k - max_offset] (zero rows outside).

    `chunk` windows at a time bound the (chunk, offsets, 1024) difference tensor for long videos.
    """
    if lip.shape != audio.shape or lip.ndim != 2:
        raise ValueError(f"expected lip and audio embeddings of one shape (W, D), got {tuple(lip.shape)} "
                         f"and {tuple(audio.shape)}")
    padded = F.pad(audio, (0, 0, max_offset, max_offset))
    shifted = padded.unfold(0, 2 * max_offset + 1, 1).transpose(1, 2)  # (W, offsets, D), a view
    return torch.cat([F.pairwise_distance(lip[start : start + chunk, None, :], shifted[start : start + chunk],
                                          eps=DISTANCE_EPS) for start in range(0, len(lip), chunk)])


def lip_sync_score(distances: torch.Tensor, max_offset: int = MAX_OFFSET) -> LipSyncScore:
    """LSE-C / LSE-D / offset from per-window, per-offset distances (W, 2 * max_offset + 1)."""
    mean_distances = distances.mean(0)
    minimum, best = torch.min(mean_distances, 0)  # torch.min as the reference calls it, for the same tie rule
    confidence = torch.median(mean_distances) - minimum
    return LipSyncScore(lse_c=float(confidence), lse_d=float(minimum), offset=int(max_offset - best),
                        mean_distances=mean_distances, num_windows=len(distances))


def num_sync_windows(num_frames: int, num_samples: int) -> int:
    """How many 5-frame windows the reference scores: min(frames, samples // 640) - 5 (possibly <= 0)."""
    return min(num_frames, num_samples // SAMPLES_PER_FRAME) - WINDOW_FRAMES


class SyncNetScorer(nn.Module):
    """SyncNet with folded batch norms, scoring one video's face crops against its audio.

    crops: (T, 3, 224, 224) face crops at 25 fps, uint8 or float on the 0-255 scale, in `channel_order` ("rgb" crops
    are turned into the BGR SyncNet was trained on by permuting the first convolution's input channels).
    audio: (N,) mono 16 kHz, int16 samples or floats in [-1, 1] (scaled by 32768, as dtl_foundation.media.mfcc does).
    The folded layers are a snapshot of `net` taken here; the scorer moves with .to() like any module.
    """

    def __init__(self, net: SyncNet, channel_order: str = "rgb", batch_size: int = 32,
                 max_offset: int = MAX_OFFSET, channels_last: bool = True) -> None:
        super().__init__()
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.channel_order = channel_order
        self.batch_size = batch_size
        self.max_offset = max_offset
        self.channels_last = channels_last
        # The first lip convolution sees channels c * 5 + t of BGR frames; RGB input reverses c there instead.
        self.lip_cnn = _fold(net.netcnnlip, [2, 1, 0] if channel_order == "rgb" else None)
        self.lip_fc = _fold(net.netfclip)
        self.audio_cnn = _fold(net.netcnnaud)
        self.audio_fc = _fold(net.netfcaud)
        if channels_last:
            self.lip_cnn.to(memory_format=torch.channels_last)
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.lip_fc[0].weight.device

    @torch.inference_mode()
    def lip_embeddings(self, crops: torch.Tensor, num_windows: int | None = None) -> torch.Tensor:
        """(W, 1024) embeddings of the windows frames[v : v + 5], v < num_windows (default: all T - 4)."""
        crops = self._checked_crops(crops)
        num_frames = len(crops)
        num_windows = num_frames - WINDOW_FRAMES + 1 if num_windows is None else num_windows
        if not 1 <= num_windows <= num_frames - WINDOW_FRAMES + 1:
            raise ValueError(f"{num_windows} windows of {WINDOW_FRAMES} frames do not fit in {num_frames} frames")
        frames = crops.permute(0, 2, 3, 1).contiguous()  # (T, H, W, 3), so that each batch below is one copy
        embeddings = []
        for start in range(0, num_windows, self.batch_size):
            count = min(self.batch_size, num_windows - start)
            # (B, H, W, 3, 5) holding frame start + b + t at [..., t]: flattened, channel c * 5 + t as
            # StackedFramesConv expects, and viewed as NCHW it is channels-last.
            stacked = torch.stack([frames[start + t : start + t + count] for t in range(WINDOW_FRAMES)], dim=-1)
            batch = stacked.flatten(3).permute(0, 3, 1, 2).float()
            if not self.channels_last:
                batch = batch.contiguous()
            embeddings.append(self.lip_fc(self.lip_cnn(batch).flatten(1)))
        return torch.cat(embeddings)

    @torch.inference_mode()
    def audio_embeddings(self, audio: torch.Tensor | np.ndarray, num_windows: int) -> torch.Tensor:
        """(W, 1024) embeddings of MFCC columns 4v .. 4v + 19 for v < num_windows."""
        waves = torch.as_tensor(audio, device=self.device)
        if waves.ndim != 1 or waves.numel() == 0:
            raise ValueError(f"expected mono audio samples (N,), got shape {tuple(waves.shape)}")
        mfcc = syncnet_mfcc_torch(waves, SAMPLE_RATE).float()  # (13, M)
        windows = mfcc.unfold(1, MFCC_WINDOW, MFCC_PER_FRAME).permute(1, 0, 2)[:num_windows]  # (W, 13, 20)
        if len(windows) < num_windows:
            raise ValueError(f"{len(audio)} samples give {len(windows)} MFCC windows, fewer than {num_windows}")
        chunks = windows[:, None].split(self.batch_size * 8)
        return torch.cat([self.audio_fc(self.audio_cnn(chunk).flatten(1)) for chunk in chunks])

    @torch.inference_mode()
    def score(self, crops: torch.Tensor, audio: torch.Tensor | np.ndarray) -> LipSyncScore:
        """LSE-C / LSE-D / AV offset of one video, the reference's numbers on the same crops and samples."""
        if np.ndim(audio) != 1:
            raise ValueError(f"expected mono audio samples (N,), got shape {tuple(np.shape(audio))}")
        num_windows = num_sync_windows(len(crops), len(audio))
        if num_windows < 1:
            raise ValueError(
                f"too short for SyncNet: {len(crops)} frames and {len(audio)} samples "
                f"({len(audio) / SAMPLE_RATE:.3f} s); it needs at least {WINDOW_FRAMES + 1} frames at {VIDEO_FPS} fps "
                f"and {(WINDOW_FRAMES + 1) * SAMPLES_PER_FRAME} samples at {SAMPLE_RATE} Hz")
        lip = self.lip_embeddings(crops, num_windows)
        audio_embeddings = self.audio_embeddings(audio, num_windows)
        return lip_sync_score(offset_distances(lip, audio_embeddings, self.max_offset), self.max_offset)

    def _checked_crops(self, crops: torch.Tensor | np.ndarray) -> torch.Tensor:
        crops = torch.as_tensor(crops, device=self.device)
        if crops.ndim != 4 or crops.shape[1:] != (3, CROP_SIZE, CROP_SIZE):
            raise ValueError(f"expected face crops (T, 3, {CROP_SIZE}, {CROP_SIZE}), got {tuple(crops.shape)} "
                             "(dtl_foundation.media.face_crop makes them)")
        if crops.dtype != torch.uint8:
            if not crops.is_floating_point():
                raise ValueError(f"expected uint8 or float crops, got {crops.dtype}")
            if crops.numel() and float(crops.max()) <= 1.0:
                raise ValueError("SyncNet takes crops on the 0-255 scale; these are all <= 1 (multiply by 255)")
        return crops


class LipSyncError(Metric):
    """Mean LSE-C and LSE-D (SyncNet, Chung & Zisserman 2016, as Wav2Lip reports them) over videos.

    `update(crops, audio)` takes one video's face crops (T, 3, 224, 224) at 25 fps and its 16 kHz mono audio (N,), or
    lists of both; see SyncNetScorer for the value conventions. Per video the scores are those of syncnet_python's
    SyncNetInstance.evaluate. The state is the sums of LSE-C and LSE-D and the number of videos, summed across
    processes. `compute` returns {"lse_c": mean, "lse_d": mean} (higher LSE-C and lower LSE-D are better).

    weights: "pretrained" (syncnet_v2.model from the registry, sha256-checked, never downloaded) or a SyncNet.
    """

    is_differentiable = False
    higher_is_better = None  # LSE-C up, LSE-D down
    full_state_update = False

    def __init__(self, weights: str | SyncNet = "pretrained", channel_order: str = "rgb", batch_size: int = 32,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(weights, str):
            if weights != "pretrained":
                raise ValueError(f"weights must be 'pretrained' or a SyncNet, got {weights!r}")
            weights = pretrained_syncnet()
        if not isinstance(weights, SyncNet):
            raise TypeError(f"weights must be 'pretrained' or a SyncNet, got {type(weights).__name__}")
        self.scorer = SyncNetScorer(weights, channel_order=channel_order, batch_size=batch_size)
        self.add_state("lse_c_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("lse_d_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_videos", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, crops: torch.Tensor | Sequence[torch.Tensor],
               audio: torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]) -> None:
        """Score one video, or each pair of two equally long lists of videos."""
        videos = [crops] if isinstance(crops, (torch.Tensor, np.ndarray)) else list(crops)
        tracks = [audio] if isinstance(audio, (torch.Tensor, np.ndarray)) else list(audio)
        if len(videos) != len(tracks):
            raise ValueError(f"got {len(videos)} videos but {len(tracks)} audio tracks")
        for video, track in zip(videos, tracks):
            result = self.scorer.score(video, track)
            self.lse_c_sum += result.lse_c
            self.lse_d_sum += result.lse_d
            self.num_videos += 1

    def compute(self) -> dict[str, torch.Tensor]:
        if int(self.num_videos) == 0:
            raise RuntimeError("LipSyncError.compute() before any update: no video was scored")
        return {"lse_c": self.lse_c_sum / self.num_videos, "lse_d": self.lse_d_sum / self.num_videos}
