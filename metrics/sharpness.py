"""CPBD sharpness (cumulative probability of blur detection, Narvekar & Karam 2011) through the `cpbd` package.

The `cpbd` import module comes from `cpbd-py312` (1.0.3): the original `cpbd` 1.0.7 imports scipy.ndimage.imread,
gone from SciPy, and cannot be imported; the fork changes only that import. Frames go to `cpbd.compute` as gray
images in 0-255 (ITU-R 601 luma of RGB). It is pure Python per pixel: about 1 s per 512x512 frame.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric

from dtl_foundation.media.face_detect import as_rgb_uint8

LUMA = np.array([0.299, 0.587, 0.114])


def import_cpbd():
    """The cpbd module, or an ImportError naming the pip package that works with current SciPy."""
    try:
        import cpbd
    except ImportError as error:
        raise ImportError(
            "CPBD needs the `cpbd` module: `pip install cpbd-py312==1.0.3` (the original `cpbd` 1.0.7 fails to import "
            f"with SciPy >= 1.2; uninstall it first): {error}"
        ) from error
    return cpbd


def gray_255(frame: np.ndarray | torch.Tensor) -> np.ndarray:
    """(H, W) float64 gray in 0-255 (ITU-R 601 luma) of an RGB frame: (3, H, W) tensor or (H, W, 3) array, 8-bit."""
    return as_rgb_uint8(frame).astype(np.float64) @ LUMA


class CPBD(Metric):
    """Mean CPBD over all frames given (higher is sharper, in [0, 1]).

    `update(frames)`: (B, 3, H, W) images or (B, T, 3, H, W) videos, RGB float in [0, 1] or uint8. CPBD scores whole
    64x64 blocks, so frames smaller than 64 pixels on a side have no blocks and score 0.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._cpbd = import_cpbd()
        self.add_state("score_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("frames", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, frames: torch.Tensor) -> None:
        if frames.ndim == 5:
            frames = frames.flatten(0, 1)
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"expected RGB images (B, 3, H, W) or videos (B, T, 3, H, W), got {tuple(frames.shape)}")
        for frame in frames:
            self.score_sum += float(self._cpbd.compute(gray_255(frame)))
            self.frames += 1

    def compute(self) -> torch.Tensor:
        if self.frames == 0:
            raise ValueError("CPBD has seen no frame")
        return (self.score_sum / self.frames).float()
