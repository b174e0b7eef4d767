"""PSNR and SSIM on torchmetrics, configured to give scikit-image's numbers image by image.

- `psnr(data_range)` == skimage.metrics.peak_signal_noise_ratio(true, test, data_range=data_range), averaged over
  images: the MSE is taken over each image's channels and pixels (dim=(1, 2, 3)); torchmetrics' default would pool the
  squared errors of the whole batch into one PSNR instead.
- `SSIM(data_range)` == skimage.metrics.structural_similarity(true, test, data_range=data_range, channel_axis=-1,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False), averaged over images. That is the Wang et al. (2004)
  setting: an 11-tap Gaussian (radius int(3.5 * 1.5 + 0.5) = 5, skimage's truncate=3.5), K1=0.01, K2=0.03, population
  (co)variances. torchmetrics computes the same SSIM map but averages all of it, including a 5-pixel border it derives
  from reflect padding; skimage drops that border. So SSIM takes torchmetrics' full map and crops the border: inside it
  the two maps are identical (the padding never reaches), and the mean then equals skimage's (0.3 % apart otherwise).
Always pass data_range (1.0 for [0, 1] images, 255.0 for 0-255): the two libraries infer it differently.
Inputs are (B, C, H, W) with H, W > 10; feed float64 for agreement beyond ~1e-6.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.functional.image import structural_similarity_index_measure
from torchmetrics.image import PeakSignalNoiseRatio

SSIM_SIGMA = 1.5
SSIM_BORDER = int(3.5 * SSIM_SIGMA + 0.5)  # the Gaussian window's radius, which skimage crops from the map


def psnr(data_range: float, **kwargs) -> PeakSignalNoiseRatio:
    """Mean over images of each image's PSNR in dB."""
    return PeakSignalNoiseRatio(data_range=data_range, dim=(1, 2, 3), reduction="elementwise_mean", **kwargs)


class SSIM(Metric):
    """Mean over images of each image's Gaussian-window SSIM, as skimage computes it."""

    is_differentiable = True
    higher_is_better = True
    full_state_update = False

    def __init__(self, data_range: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.data_range = float(data_range)
        self.add_state("similarity_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("image_count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def per_image(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B,) skimage SSIM of each pair."""
        _, ssim_map = structural_similarity_index_measure(
            preds,
            target,
            gaussian_kernel=True,
            sigma=SSIM_SIGMA,
            data_range=self.data_range,
            k1=0.01,
            k2=0.03,
            reduction="none",
            return_full_image=True,
        )
        return ssim_map[..., SSIM_BORDER:-SSIM_BORDER, SSIM_BORDER:-SSIM_BORDER].flatten(1).mean(1)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        similarities = self.per_image(preds, target)
        self.similarity_sum += similarities.double().sum()
        self.image_count += similarities.numel()

    def compute(self) -> torch.Tensor:
        return self.similarity_sum / self.image_count
