"""The face of each synthetic speaker of the demo corpus, shared by its videos and the renderer's mouth probe."""

from __future__ import annotations

import zlib

import numpy as np

from rendering.face_params import FaceParams


def speaker_face_params(speaker: str, seed: int = 0) -> FaceParams:
    """The face of a synthetic speaker: colours and proportions drawn from (seed, speaker)."""
    return FaceParams.sample(np.random.default_rng([seed, zlib.crc32(f"{speaker}/face-rig".encode())]))
