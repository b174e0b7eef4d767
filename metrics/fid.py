"""Fréchet Inception Distance as a streaming torchmetrics Metric, numerically pytorch-fid's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from pytorch_fid.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2, InceptionV3
from torch import nn
from torchmetrics import Metric
from torchvision.models import inception_v3

from metrics.frechet import frechet_distance
from dtl_foundation.weights import REGISTRY, resolve_weights


def fid_inception_architecture() -> nn.Module:
    """pytorch-fid's FID Inception-v3 (torchvision's, FID blocks patched in), randomly initialised, nothing downloaded.

    Its state_dict has exactly the keys of pt_inception-2015-12-05-6726825d.pth; tests save a seeded one into a
    temporary torch.hub cache so that pytorch-fid's own `InceptionV3` loads it.
    """
    # the call pytorch-fid's private _inception_v3 makes on torchvision >= 0.13
    inception = inception_v3(num_classes=1008, aux_logits=False, weights=None, init_weights=False)
    inception.Mixed_5b = FIDInceptionA(192, pool_features=32)
    inception.Mixed_5c = FIDInceptionA(256, pool_features=64)
    inception.Mixed_5d = FIDInceptionA(288, pool_features=64)
    inception.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    inception.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    inception.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    inception.Mixed_7b = FIDInceptionE_1(1280)
    inception.Mixed_7c = FIDInceptionE_2(2048)
    return inception


def write_seeded_fid_inception(home: str | Path) -> Path:
    """A TORCH_HOME whose hub cache holds a seeded random-weight FID Inception under the official file name, for
    parity checks and benchmarks where the published weights cannot be had.

    Convolutions get He-normal weights so that pool3 features are O(0.1) rather than the ~1e-8 of PyTorch's default
    init; pytorch-fid's own InceptionV3 then loads the file exactly as it would the published one.
    """
    home = Path(home)
    torch.manual_seed(0)
    network = fid_inception_architecture()
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(network.state_dict(), checkpoints / REGISTRY["fid_inception"].filename)
    return home


def pretrained_fid_inception(dims: int = 2048) -> InceptionV3:
    """pytorch-fid's InceptionV3 on the registry-verified weights; raises instead of downloading a missing file."""
    resolve_weights("fid_inception")
    # pytorch-fid loads through torch.hub's cache, which is exactly the path just verified, so nothing is fetched.
    return InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims]])


def sample_frames_evenly(videos: torch.Tensor, frames_per_video: int) -> torch.Tensor:
    """(B, T, C, H, W) -> (B * k, C, H, W): k frames per video at round(linspace(0, T - 1, k))."""
    num_frames = videos.shape[1]
    if frames_per_video > num_frames:
        raise ValueError(f"frames_per_video={frames_per_video} but the videos have only {num_frames} frames")
    index = torch.from_numpy(np.linspace(0, num_frames - 1, frames_per_video).round().astype(np.int64))
    return videos.index_select(1, index.to(videos.device)).flatten(0, 1)


class FrechetInceptionDistance(Metric):
    """FID between the accumulated real and generated sets.

    `update(images, real)` takes RGB images (B, 3, H, W) or videos (B, T, 3, H, W), float in [0, 1] or uint8 in
    [0, 255] (divided by 255 like pytorch-fid's ToTensor), or precomputed features (N, dims). Videos contribute
    `frames_per_video` evenly spaced frames each (all frames when None). Resizing to 299 and scaling to [-1, 1] are
    pytorch-fid's own, inside InceptionV3. Per set the state is n, sum(x) and sum(x xᵀ) in float64, summed across
    processes, so the result does not depend on batching or world size; `compute` forms the mean and the unbiased
    covariance (as np.cov) and takes their Fréchet distance with `metrics.frechet.frechet_distance` (pytorch-fid's
    `calculate_frechet_distance` value, without scipy's slow sqrtm).

    The feature extractor is switched to channels_last memory layout (faster convolutions on CPU; same weights, and
    features equal to pytorch-fid's to float rounding), in place like the switch to eval mode.

    weights: "pretrained" (the registry's sha-checked pt_inception file, never downloaded) or a module behaving like
    pytorch_fid.inception.InceptionV3 (returns a list whose first element is (B, dims, h, w)).
    dims: 2048 (pool3, the standard FID) or pytorch-fid's other choices 64 / 192 / 768.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        weights: str | nn.Module = "pretrained",
        dims: int = 2048,
        frames_per_video: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if dims not in InceptionV3.BLOCK_INDEX_BY_DIM:
            raise ValueError(f"dims must be one of {sorted(InceptionV3.BLOCK_INDEX_BY_DIM)}, got {dims}")
        if isinstance(weights, str):
            if weights != "pretrained":
                raise ValueError(f"weights must be 'pretrained' or an nn.Module, got {weights!r}")
            weights = pretrained_fid_inception(dims)
        self.inception = weights.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        self.dims = dims
        self.frames_per_video = frames_per_video
        for prefix in ("real", "fake"):
            self.add_state(f"{prefix}_sum", torch.zeros(dims, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{prefix}_outer_sum", torch.zeros(dims, dims, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{prefix}_count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def train(self, mode: bool = True) -> FrechetInceptionDistance:
        # The feature extractor has BatchNorm: it must stay in eval mode even inside a module put in training mode.
        super().train(mode)
        self.inception.eval()
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Inception features (N, dims), as pytorch-fid's get_activations computes them."""
        if images.ndim == 5 and self.frames_per_video:
            images = sample_frames_evenly(images, self.frames_per_video)
        elif images.ndim == 5:
            images = images.flatten(0, 1)
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W) or videos (B, T, 3, H, W), got {tuple(images.shape)}")
        images = images.contiguous(memory_format=torch.channels_last)
        # The division makes a fresh float copy of uint8 input, exactly as torchvision's ToTensor scales it.
        images = images.float().div_(255) if images.dtype == torch.uint8 else images.float()
        with torch.inference_mode():
            pred = self.inception(images)[0]
        if pred.shape[2:] != (1, 1):
            pred = nn.functional.adaptive_avg_pool2d(pred, output_size=(1, 1))
        return pred.flatten(1)

    def update(self, images: torch.Tensor, real: bool) -> None:
        """Add images or videos to the real or generated set; a 2-D (N, dims) tensor counts as precomputed features."""
        features = images if images.ndim == 2 else self.features(images)
        if features.shape[1] != self.dims:
            raise ValueError(f"expected features (N, {self.dims}), got {tuple(features.shape)}")
        features = features.double()
        prefix = "real" if real else "fake"
        setattr(self, f"{prefix}_sum", getattr(self, f"{prefix}_sum") + features.sum(0))
        setattr(self, f"{prefix}_outer_sum", getattr(self, f"{prefix}_outer_sum") + features.T @ features)
        setattr(self, f"{prefix}_count", getattr(self, f"{prefix}_count") + features.shape[0])

    def statistics(self, real: bool) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) of one set, as pytorch-fid's calculate_activation_statistics returns them.

        Outside `compute` this reads this process's states only; wrap it in `with self.sync_context():` under DDP.
        """
        prefix = "real" if real else "fake"
        count = int(getattr(self, f"{prefix}_count"))
        if count < 2:
            raise RuntimeError(f"FID needs at least 2 {prefix} samples, got {count}")
        total = getattr(self, f"{prefix}_sum").cpu().numpy()
        outer = getattr(self, f"{prefix}_outer_sum").cpu().numpy()
        mu = total / count
        sigma = (outer - count * np.outer(mu, mu)) / (count - 1)
        return mu, sigma

    def compute(self) -> torch.Tensor:
        mu_real, sigma_real = self.statistics(real=True)
        mu_fake, sigma_fake = self.statistics(real=False)
        distance = frechet_distance(mu_real, sigma_real, mu_fake, sigma_fake)
        return torch.tensor(distance, dtype=torch.float64, device=self.real_sum.device)
