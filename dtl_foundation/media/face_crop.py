"""SyncNet's face crops: a face box per frame -> the median-smoothed square syncnet_python crops -> 224 x 224.

Geometry of syncnet_python's `crop_video` (facts, own code): per frame the box gives a half-size
bs = max(width, height) / 2 and a centre; both are median-filtered over time (scipy.signal.medfilt, kernel 13, which
zero-pads at the ends exactly as the reference does); the frame is padded by int(bs * (1 + 2 * crop_scale)) pixels of
grey 110; the crop spans bs above the centre to bs * (1 + 2 * crop_scale) below it and bs * (1 + crop_scale) to each
side (crop_scale 0.4: a square of 2.8 bs that holds the mouth), corners truncated with int(); it is resized to 224 with
bilinear interpolation (OpenCV's INTER_LINEAR sampling: half-pixel centres, no antialiasing).
The boxes may come from any detector; crop_scale 0.4 was chosen for S3FD boxes, which reach higher up the forehead
than dlib's.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
from scipy.signal import medfilt

CROP_SIZE = 224
CROP_SCALE = 0.4
SMOOTHING_KERNEL = 13
PAD_VALUE = 110


def crop_faces(
    frames: np.ndarray | torch.Tensor,
    boxes: np.ndarray | Sequence[Sequence[float] | None],
    crop_scale: float = CROP_SCALE,
    smoothing_kernel: int = SMOOTHING_KERNEL,
    size: int = CROP_SIZE,
) -> torch.Tensor:
    """(T, 3, size, size) crops of frames (T, H, W, 3) or (T, 3, H, W), channel order kept.

    boxes: (T, 4) (left, top, right, bottom) in pixels, one per frame; a frame without a detection has None or a row
    of NaN and gets its box linearly interpolated from the neighbouring detections (held constant past the ends).
    uint8 frames give uint8 crops (rounded, as the reference's crops are); float frames (0-255) give float32 crops.
    smoothing_kernel: odd median-filter length over frames (1 switches the smoothing off).
    """
    images = _channels_first(frames)
    filled = _interpolated_boxes(boxes, images.shape[0])
    half = np.maximum(filled[:, 2] - filled[:, 0], filled[:, 3] - filled[:, 1]) / 2
    centre_x = (filled[:, 0] + filled[:, 2]) / 2
    centre_y = (filled[:, 1] + filled[:, 3]) / 2
    if smoothing_kernel > 1:
        if smoothing_kernel % 2 == 0:
            raise ValueError(f"smoothing_kernel must be odd, got {smoothing_kernel}")
        with warnings.catch_warnings():  # clips shorter than the kernel are zero-padded, as in the reference
            warnings.filterwarnings("ignore", message=".*kernel_size exceeds volume extent.*")
            half, centre_x, centre_y = (medfilt(v, smoothing_kernel) for v in (half, centre_x, centre_y))
    crops = []
    for image, bs, cx, cy in zip(images, half, centre_x, centre_y):
        pad = int(bs * (1 + 2 * crop_scale))
        # Corners in the padded frame's coordinates, truncated as the reference's int() does.
        top, bottom = int(cy + pad - bs), int(cy + pad + bs * (1 + 2 * crop_scale))
        left, right = int(cx + pad - bs * (1 + crop_scale)), int(cx + pad + bs * (1 + crop_scale))
        padded_height, padded_width = image.shape[1] + 2 * pad, image.shape[2] + 2 * pad
        region = _padded_region(image, pad, top, min(bottom, padded_height), left, min(right, padded_width))
        crops.append(_resize(region, size))
    return _like_input(torch.stack(crops), images.dtype)


def centre_crop_faces(frames: np.ndarray | torch.Tensor, size: int = CROP_SIZE) -> torch.Tensor:
    """(T, 3, size, size): the central square of each frame resized, for frames that already are face crops."""
    images = _channels_first(frames)
    height, width = images.shape[2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = images[:, :, top : top + side, left : left + side].float()
    resized = torch.nn.functional.interpolate(square, size=(size, size), mode="bilinear", align_corners=False)
    return _like_input(resized, images.dtype)


def _channels_first(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    images = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
    if images.ndim != 4 or 3 not in (images.shape[1], images.shape[-1]):
        raise ValueError(f"expected frames (T, H, W, 3) or (T, 3, H, W), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("no frames to crop")
    if images.shape[1] != 3:
        images = images.permute(0, 3, 1, 2)
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"expected uint8 or float (0-255) frames, got {images.dtype}")
    return images


def _interpolated_boxes(boxes, num_frames: int) -> np.ndarray:
    rows = [[np.nan] * 4 if box is None else box for box in boxes] if not isinstance(boxes, np.ndarray) else boxes
    filled = np.array(rows, dtype=np.float64)
    if filled.shape != (num_frames, 4):
        raise ValueError(f"expected one (left, top, right, bottom) box per frame: ({num_frames}, 4), "
                         f"got {filled.shape}")
    detected = ~np.isnan(filled).any(axis=1)
    if not detected.any():
        raise ValueError("no frame has a face box")
    if not (filled[detected, 2] > filled[detected, 0]).all() or not (filled[detected, 3] > filled[detected, 1]).all():
        raise ValueError("every box must have right > left and bottom > top")
    index = np.arange(num_frames)
    for column in range(4):
        filled[:, column] = np.interp(index, index[detected], filled[detected, column])
    return filled


def _padded_region(image: torch.Tensor, pad: int, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """image[:, top:bottom, left:right] of the frame padded by `pad` grey pixels, without padding the whole frame."""
    region = torch.full((3, max(bottom - top, 1), max(right - left, 1)), PAD_VALUE, dtype=torch.float32)
    height, width = image.shape[1:]
    src_top, src_bottom = max(top - pad, 0), min(bottom - pad, height)
    src_left, src_right = max(left - pad, 0), min(right - pad, width)
    if src_bottom > src_top and src_right > src_left:
        region[:, src_top + pad - top : src_bottom + pad - top, src_left + pad - left : src_right + pad - left] = (
            image[:, src_top:src_bottom, src_left:src_right].float())
    return region


def _resize(region: torch.Tensor, size: int) -> torch.Tensor:
    return torch.nn.functional.interpolate(region[None], size=(size, size), mode="bilinear", align_corners=False)[0]


def _like_input(crops: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype == torch.uint8:
        return crops.round_().clamp_(0, 255).to(torch.uint8)
    return crops.float()
