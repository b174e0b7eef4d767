"""Relative motion transfer (face-vid2vid's "relative mode"): the portrait moves as the driving sequence moves
away from a reference frame, so the portrait keeps its own identity, pose and shape (Wang et al. 2021; Siarohin et al.
2019, FOMM Sec. 3.4).

    kp_new(t) = kp_source + (kp_driving(t) - kp_reference) * scale,
    scale = sqrt(hull area(kp_source) / hull area(kp_reference))  when adapted, else 1,

the reference being the driving sequence's first frame (the papers' choice) or a frame of what the portrait is taken
to show (the rig's neutral face: then an expression held from the first frame on reaches the portrait). The hull
is taken over the keypoints' (x, y) image-plane positions (scipy.spatial.ConvexHull; in 2D its `volume` is the
area).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from scipy.spatial import ConvexHull, QhullError


def hull_area(keypoints: np.ndarray | torch.Tensor) -> float:
    """Area of the convex hull of (K, 2+) keypoints' first two coordinates."""
    points = np.asarray(keypoints.detach().cpu() if isinstance(keypoints, torch.Tensor) else keypoints,
                        dtype=np.float64)[:, :2]
    if points.ndim != 2 or len(points) < 3:
        raise ValueError(f"a hull needs at least 3 keypoints, got shape {points.shape}")
    try:
        return float(ConvexHull(points).volume)
    except QhullError as e:
        raise ValueError(f"the keypoints span no area (collinear or repeated): {e}") from None


def movement_scale(kp_source: np.ndarray | torch.Tensor, kp_driving_first: np.ndarray | torch.Tensor) -> float:
    """sqrt(area(source hull) / area(first driving hull)): driving motion resized to the portrait's face."""
    return float(np.sqrt(hull_area(kp_source) / hull_area(kp_driving_first)))


def relative_keypoints(kp_source: torch.Tensor, kp_driving: torch.Tensor, kp_driving_first: torch.Tensor,
                       scale: float = 1.0) -> torch.Tensor:
    """kp_source + (kp_driving - kp_driving_first) * scale; kp_driving may carry a leading batch of frames."""
    return kp_source + (kp_driving - kp_driving_first) * scale


class MotionTransfer:
    """Animates one portrait crop with a driving sequence through a FaceVid2Vid in relative mode.

    The source is encoded once (feature volume, canonical keypoints, posed keypoints); each driving frame costs one
    head/expression estimate, one dense motion and one decode. Driving keypoints use the source's canonical
    keypoints, so only pose and expression come from the driving frames.
    """

    def __init__(self, model: torch.nn.Module, source: torch.Tensor, *, adapt_scale: bool = True,
                 batch_size: int = 8, reference: torch.Tensor | None = None) -> None:
        """source and reference: (3, H, W) in [0, 1] at the model's image size; reference, a driving frame of the
        expression the portrait is taken to show (None: the first driving frame)."""
        if source.ndim != 3 or source.shape[0] != 3:
            raise ValueError(f"source must be one (3, H, W) image, got shape {tuple(source.shape)}")
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.adapt_scale = adapt_scale
        self.batch_size = batch_size
        with torch.no_grad():
            self.encoded = model.encode_source(source[None].to(self.device))
        self.kp_driving_first: torch.Tensor | None = None
        self.scale = 1.0
        if reference is not None:
            with torch.no_grad():
                self._set_reference(model.driving_keypoints(self.encoded.canonical, reference[None].to(self.device))[0])

    def _set_reference(self, kp_reference: torch.Tensor) -> None:
        self.kp_driving_first = kp_reference
        if self.adapt_scale:
            self.scale = movement_scale(self.encoded.keypoints[0].float(), kp_reference[0].float())

    @torch.no_grad()
    def __call__(self, driving: torch.Tensor) -> Iterator[torch.Tensor]:
        """(T, 3, H, W) driving frames in [0, 1] -> (t, 3, H, W) output chunks; without a reference, the first frame
        ever seen is it."""
        for start in range(0, len(driving), self.batch_size):
            chunk = driving[start:start + self.batch_size].to(self.device)
            canonical = self.encoded.canonical.expand(len(chunk), -1, -1)
            kp_driving, _ = self.model.driving_keypoints(canonical, chunk)
            if self.kp_driving_first is None:
                self._set_reference(kp_driving[:1])
            kp_new = relative_keypoints(self.encoded.keypoints, kp_driving, self.kp_driving_first, self.scale)
            volume = self.encoded.volume.expand(len(chunk), *self.encoded.volume.shape[1:])
            yield self.model.generate(volume, self.encoded.keypoints.expand_as(kp_new), kp_new)["prediction"].float()
