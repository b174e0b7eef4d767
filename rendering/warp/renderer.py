"""`renderer=warp`: the training-free renderer beside face-vid2vid (rendering/warp/portrait_warp.py does the work).

It needs no checkpoint: the default rig, its landmark calibration and dlib's landmarks of the portrait are all it
uses. `animate` takes the portrait, the blendshape track (and head poses when the track has them) and, optionally,
the avatar frames already rendered for the same track, and yields whole portrait frames.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from rendering.default_rig import default_rig
from rendering.gl_renderer import FaceRenderer
from rendering.rig_landmarks import default_calibration
from rendering.warp.portrait_warp import PortraitWarp, WarpSettings
from rendering.warp.rig_points import rig_points

AVATAR_SIZE = 256


class WarpRenderer:
    """Animates portraits with the default rig's motion; avatar frames come from a FaceRenderer at `avatar_size`."""

    name = "warp"

    def __init__(self, settings: WarpSettings = WarpSettings(), avatar_size: int = AVATAR_SIZE,
                 device: torch.device | str = "cpu") -> None:
        self.settings, self.avatar_size, self.device = settings, avatar_size, torch.device(device)
        self._avatar = None
        self._points = None

    def _rig(self):
        """The avatar renderer and the rig's control points, made on first use."""
        if self._avatar is None:
            rig = default_rig()
            self._avatar = FaceRenderer(rig, self.avatar_size)
            self._points = rig_points(rig, default_calibration(), self._avatar)
        return self._avatar, self._points

    def prepare(self, image: np.ndarray, landmarks: np.ndarray) -> PortraitWarp:
        """The warp of one portrait (H, W, 3) uint8 whose face has the 68 dlib `landmarks`."""
        avatar, points = self._rig()
        return PortraitWarp(image, landmarks, points, avatar, self.settings, self.device)

    def render_avatar(self, coeffs: np.ndarray, poses: np.ndarray | None = None) -> np.ndarray:
        """(T, S, S, 3) uint8 avatar frames of the track, as `animate` expects them."""
        return self._rig()[0].render(coeffs, poses).numpy()

    def animate(self, image: np.ndarray, landmarks: np.ndarray, coeffs: np.ndarray,
                avatar_frames: np.ndarray | None = None, poses: np.ndarray | None = None,
                batch_size: int = 16, reference: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """Yield (t, H, W, 3) uint8 chunks of the portrait moving with (T, 52) blendshapes, relative to
        `reference`: the (52,) blendshapes the portrait is taken to show (None: neutral; coeffs[0]: the track's
        first frame, face-vid2vid's relative mode)."""
        coeffs = np.asarray(coeffs, dtype=np.float32)
        if avatar_frames is None:
            avatar_frames = self.render_avatar(coeffs, poses)
        if avatar_frames.shape[1:] != (self.avatar_size, self.avatar_size, 3) or len(avatar_frames) != len(coeffs):
            raise ValueError(f"avatar frames must be ({len(coeffs)}, {self.avatar_size}, {self.avatar_size}, 3) "
                             f"renders of the default rig, got {tuple(avatar_frames.shape)}")
        yield from self.prepare(image, landmarks).render(coeffs, avatar_frames, poses, batch_size, reference)

    def close(self) -> None:
        if self._avatar is not None:
            self._avatar.release()
            self._avatar = None

    def __enter__(self) -> "WarpRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
