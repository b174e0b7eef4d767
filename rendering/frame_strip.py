"""A strip of a few evenly spaced frames of a generated video, face-cropped, saved as one PNG beside the MP4:
what a talking video did, visible without playing it."""

from __future__ import annotations

import os
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

from dtl_foundation.atomic_files import atomic_path
from dtl_foundation.media.portrait import CropBox, crop


STRIP_SUFFIX = "_strip.png"  # <stem>_strip.png beside <stem>.mp4: written by dtl generate video, read by reports


class FrameStrip:
    """Collects `count` evenly spaced frames of a `total`-frame stream (passed through `collect`) as face crops."""

    def __init__(self, total: int, box: CropBox, count: int = 6, size: int = 192) -> None:
        self.wanted = set(np.linspace(0, max(total - 1, 0), count).round().astype(int).tolist())
        self.box, self.size = box, size
        self.crops: list[np.ndarray] = []
        self.seen = 0

    def collect(self, chunks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Yield the (t, H, W, 3) chunks unchanged, keeping the crops of the wanted frames."""
        for chunk in chunks:
            for k, frame in enumerate(chunk):
                if self.seen + k in self.wanted:
                    self.crops.append(crop(frame, self.box, self.size))
            self.seen += len(chunk)
            yield chunk

    def save(self, path: str | os.PathLike) -> None:
        """Write the crops side by side as a PNG (atomically)."""
        if not self.crops:
            raise ValueError(f"{path}: no frames were collected for the strip")
        with atomic_path(path) as tmp:
            Image.fromarray(np.concatenate(self.crops, 1)).save(tmp, format="PNG")
