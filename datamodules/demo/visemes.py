"""Mouth shapes of espeak-ng phonemes (visemes) and the mouth track of an utterance."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from dtl_foundation.arkit import INDEX, NUM_BLENDSHAPES


def _both(name: str, value: float) -> dict[str, float]:
    return {f"{name}Left": value, f"{name}Right": value}


# Target mouth pose per viseme class, by ARKit name (values at full loudness).
VISEMES: dict[str, dict[str, float]] = {
    "rest": {"mouthClose": 0.05},
    "bilabial": {"mouthClose": 0.55, **_both("mouthPress", 0.45), "jawOpen": 0.04},
    "labiodental": {"mouthRollLower": 0.55, **_both("mouthUpperUp", 0.25), "jawOpen": 0.1},
    "rounded": {"mouthPucker": 0.6, "mouthFunnel": 0.45, "jawOpen": 0.28},
    "open": {"jawOpen": 0.75, **_both("mouthLowerDown", 0.35), **_both("mouthUpperUp", 0.1)},
    "spread": {**_both("mouthStretch", 0.4), "jawOpen": 0.32, **_both("mouthLowerDown", 0.15)},
    "mid": {"jawOpen": 0.42, **_both("mouthLowerDown", 0.2)},
    "dental": {"jawOpen": 0.16, "tongueOut": 0.3, **_both("mouthStretch", 0.1)},
    "alveolar": {"jawOpen": 0.18, **_both("mouthStretch", 0.15)},
    "postalveolar": {"mouthFunnel": 0.5, "mouthPucker": 0.25, "jawOpen": 0.16, "mouthShrugUpper": 0.15},
    "back": {"jawOpen": 0.26},
}

# espeak-ng English phoneme mnemonics by class; the longest matching prefix decides.
_PHONEME_CLASSES: dict[str, tuple[str, ...]] = {
    "rest": ("_", "?"),
    "bilabial": ("p", "b", "m"),
    "labiodental": ("f", "v"),
    "rounded": ("w", "u:", "U", "oU", "O", "0", "aU"),
    "open": ("a", "A", "V", "aI"),
    "spread": ("i", "I", "e", "E", "eI"),
    "mid": ("@", "3"),
    "dental": ("T", "D"),
    "alveolar": ("t", "d", "n", "l", "r", "s", "z"),
    "postalveolar": ("S", "Z", "tS", "dZ"),
    "back": ("k", "g", "N", "h", "j", "x"),
}
_PREFIXES = sorted(((p, c) for c, ps in _PHONEME_CLASSES.items() for p in ps), key=lambda pc: -len(pc[0]))
_OPENING = [INDEX[n] for n in ("jawOpen", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthFunnel")]


def viseme_of(phoneme: str) -> str:
    """The viseme class of an espeak-ng phoneme mnemonic ('mid' for anything unlisted)."""
    for prefix, cls in _PREFIXES:
        if phoneme.startswith(prefix):
            return cls
    return "mid"


def _pose(viseme: str) -> np.ndarray:
    pose = np.zeros(NUM_BLENDSHAPES, np.float32)
    for name, value in VISEMES[viseme].items():
        pose[INDEX[name]] = value
    return pose


_POSES = {v: _pose(v) for v in VISEMES}


def mouth_track(phonemes: list[tuple[float, str]], loudness: np.ndarray, fps: float,
                coarticulation_frames: float = 0.8) -> np.ndarray:
    """(T, 52) mouth poses: the active phoneme's viseme per frame, smoothed, opening scaled by loudness.

    `loudness` is the per-frame RMS envelope normalised to about [0, 1]; the opening shapes follow it so that
    mouth aperture tracks the audio itself, not only the phoneme labels.
    """
    frames = len(loudness)
    centres = (np.arange(frames) + 0.5) / fps
    starts = np.array([s for s, _ in phonemes] or [0.0])
    active = np.searchsorted(starts, centres, side="right") - 1
    poses = np.stack([_POSES["rest"] if i < 0 else _POSES[viseme_of(phonemes[i][1])] for i in active])
    poses = gaussian_filter1d(poses, coarticulation_frames, axis=0, mode="nearest")
    gain = 0.2 + 0.8 * np.clip(loudness, 0.0, 1.2) ** 0.8
    poses[:, _OPENING] *= gain[:, None]
    return poses
