"""Emotional expression of the demo speakers: face offsets and prosody per emotion, blinks, slow drift."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from dtl_foundation.arkit import INDEX, NUM_BLENDSHAPES


def _both(name: str, value: float) -> dict[str, float]:
    return {f"{name}Left": value, f"{name}Right": value}


# Expression offsets at intensity level 3, by ARKit name (FACS-style prototypes of each MEAD emotion).
EMOTION_OFFSETS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {**_both("mouthSmile", 0.6), **_both("cheekSquint", 0.4), **_both("eyeSquint", 0.2),
              **_both("mouthDimple", 0.15)},
    "angry": {**_both("browDown", 0.6), **_both("mouthPress", 0.3), **_both("noseSneer", 0.35),
              **_both("eyeSquint", 0.3), "jawForward": 0.15},
    "sad": {"browInnerUp": 0.6, **_both("mouthFrown", 0.45), "mouthShrugLower": 0.25, **_both("eyeLookDown", 0.2)},
    "surprised": {**_both("eyeWide", 0.6), "browInnerUp": 0.45, **_both("browOuterUp", 0.55), "jawOpen": 0.12},
    "fear": {**_both("eyeWide", 0.45), "browInnerUp": 0.55, **_both("mouthStretch", 0.4), **_both("browDown", 0.15)},
    "disgusted": {**_both("noseSneer", 0.55), **_both("mouthUpperUp", 0.4), **_both("browDown", 0.3),
                  "mouthShrugUpper": 0.25, **_both("cheekSquint", 0.2)},
    "contempt": {"mouthSmileLeft": 0.45, "mouthDimpleLeft": 0.35, "mouthPressRight": 0.2, "eyeSquintLeft": 0.15},
}

# Prosody at level 3: (speed factor, pitch shift in espeak units, pitch-range factor, volume factor).
EMOTION_PROSODY: dict[str, tuple[float, float, float, float]] = {
    "neutral": (1.0, 0.0, 1.0, 1.0),
    "happy": (1.08, 10.0, 1.5, 1.1),
    "angry": (1.15, 4.0, 1.3, 1.45),
    "sad": (0.78, -10.0, 0.5, 0.7),
    "surprised": (1.05, 18.0, 1.8, 1.2),
    "fear": (1.2, 12.0, 1.2, 0.85),
    "disgusted": (0.88, -6.0, 0.8, 0.95),
    "contempt": (0.92, -4.0, 0.7, 0.9),
}

LEVEL_INTENSITY: dict[int, float] = {1: 0.45, 2: 0.72, 3: 1.0}


def prosody(emotion: str, level: int) -> tuple[float, float, float, float]:
    """Speed, pitch shift, range and volume factors of an emotion at a level (level 3 = full effect)."""
    k = LEVEL_INTENSITY[level]
    speed, pitch, pitch_range, volume = EMOTION_PROSODY[emotion]
    return 1 + k * (speed - 1), k * pitch, 1 + k * (pitch_range - 1), 1 + k * (volume - 1)


def expression_offset(emotion: str, level: int, speaker_scale: np.ndarray) -> np.ndarray:
    """(52,) offset of an emotion at a level, scaled per blendshape by the speaker's idiosyncrasy."""
    offset = np.zeros(NUM_BLENDSHAPES, np.float32)
    for name, value in EMOTION_OFFSETS[emotion].items():
        offset[INDEX[name]] = value
    return offset * LEVEL_INTENSITY[level] * speaker_scale


def slow_drift(frames: int, fps: float, rng: np.random.Generator, amplitude: float = 0.12) -> np.ndarray:
    """(T, 1) smooth multiplicative variation of expression strength (a few tenths of a hertz)."""
    t = np.arange(frames) / fps
    wave = sum(np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t + rng.uniform(0, 2 * np.pi)) for _ in range(2)) / 2
    return (1 + amplitude * wave)[:, None].astype(np.float32)


def blinks(frames: int, fps: float, rng: np.random.Generator, rate_hz: float = 0.3) -> np.ndarray:
    """(T,) eyelid closure: Poisson-timed blinks of about 150 ms."""
    closure = np.zeros(frames, np.float32)
    t = rng.exponential(1 / rate_hz) * 0.5
    duration = frames / fps
    while t < duration:
        centre, half = t * fps, 0.075 * fps
        idx = np.arange(max(int(centre - 2 * half), 0), min(int(centre + 2 * half) + 1, frames))
        closure[idx] = np.maximum(closure[idx], np.clip(1 - np.abs(idx - centre) / (2 * half), 0, 1) * 0.95)
        t += rng.exponential(1 / rate_hz) + 0.3
    return closure


def micro_noise(frames: int, rng: np.random.Generator, scale: float = 0.015) -> np.ndarray:
    """(T, 52) small smooth noise on every coefficient."""
    return gaussian_filter1d(rng.normal(0, scale, (frames, NUM_BLENDSHAPES)), 1.5, axis=0).astype(np.float32)
