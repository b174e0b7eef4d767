"""Negative controls for the metrics: build control clips from real images, score them with `dtl eval`'s own scorers,
and assert that a metric ranks the positive control above every negative one by a margin.

Each control test also shows that the same assertion fails when the metric under test returns a constant
(`assert_fails_when_constant`), so a passing control is evidence the metric measures something.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from experiments.evaluate.inputs import VideoPair
from experiments.evaluate.scorers import DecodedPair
from dtl_foundation.media.video_read import AUDIO_SAMPLE_RATE, VIDEO_FPS, VideoClip


def clip_item(frames: np.ndarray, reference: np.ndarray | None = None, emotion: str | None = None,
              audio: np.ndarray | None = None, name: str = "control") -> DecodedPair:
    """An in-memory decoded (generated, reference) pair, as `dtl eval` hands it to its scorers."""
    silence = np.zeros(int(len(frames) * AUDIO_SAMPLE_RATE / VIDEO_FPS), dtype=np.int16)

    def clip(images: np.ndarray, sound: np.ndarray | None) -> VideoClip:
        return VideoClip(Path(f"{name}.mp4"), images, silence if sound is None else sound, VIDEO_FPS,
                         AUDIO_SAMPLE_RATE)

    pair = VideoPair(name, Path(f"{name}.mp4"), Path("reference.mp4") if reference is not None else None, emotion)
    return DecodedPair(pair, clip(frames, audio), None if reference is None else clip(reference, audio))


def assert_ranks(values: dict[str, float], positive: str, negatives: list[str], margin: float, better: str) -> None:
    """values[positive] beats every values[negative] by at least `margin` (a NaN negative: unscored, counts as
    beaten only when the caller filtered it out; here it fails)."""
    assert len(negatives) >= 2, "a control test needs at least two negative controls"
    good = values[positive]
    assert not math.isnan(good), f"the positive control {positive} got no number: {values}"
    for name in negatives:
        bad = values[name]
        gap = good - bad if better == "max" else bad - good
        assert gap >= margin, (f"{positive} ({good:.4g}) does not beat {name} ({bad:.4g}) by {margin} "
                               f"({'higher' if better == 'max' else 'lower'} is better): {values}")


def assert_fails_when_constant(check, monkeypatch, target, attribute: str, constant) -> None:
    """The control check `check()` must fail once `target.attribute` is replaced by `constant`."""
    with monkeypatch.context() as patch:
        patch.setattr(target, attribute, constant)
        with pytest.raises(AssertionError):
            check()
