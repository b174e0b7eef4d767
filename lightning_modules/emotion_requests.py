"""What a user asks EmoDiff for: an emotion, a level or a continuous intensity, a mixture, or a schedule over time,
turned into the generator's emotion vectors (one per request, or one per frame)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from dtl_foundation.mead import EMOTION_INDEX, EMOTIONS, levels_of
from lightning_modules.networks.emodiff_generator import EmoDiffGenerator

log = logging.getLogger(__name__)

NEUTRAL = ("neutral", 1)


@dataclass(frozen=True)
class EmotionMix:
    """A weighted sum of (emotion, level) conditions; weights sum to 1."""

    parts: tuple[tuple[str, int, float], ...]

    def describe(self) -> str:
        return ",".join(f"{e}@{lv}:{w:g}" for e, lv, w in self.parts)


def check_emotion(emotion: str, level: int) -> tuple[int, int]:
    """(emotion index, level), or a clear error for an unknown emotion or a level it does not have."""
    if emotion not in EMOTION_INDEX:
        raise ValueError(f"unknown emotion {emotion!r}; known: {', '.join(EMOTIONS)}")
    if level not in levels_of(emotion):
        raise ValueError(f"emotion {emotion!r} has levels {list(levels_of(emotion))}, not {level}")
    return EMOTION_INDEX[emotion], level


def intensity_mix(emotion: str, intensity: float) -> EmotionMix:
    """Continuous intensity: the style-space line from neutral (0) to the emotion at its top level (1); values
    outside [0, 1] are clamped, with a warning."""
    if not 0.0 <= intensity <= 1.0:
        clamped = min(max(intensity, 0.0), 1.0)
        log.warning("intensity %g is outside [0, 1]; using %g", intensity, clamped)
        intensity = clamped
    top = max(levels_of(emotion))
    check_emotion(emotion, top)
    return EmotionMix(((NEUTRAL[0], NEUTRAL[1], 1.0 - intensity), (emotion, top, intensity)))


def parse_emotion(text: str, level: int = 3, intensity: float | None = None) -> EmotionMix:
    """`sad`, or a mixture `happy:0.6,surprised:0.4` (weights normalised to sum 1), at `level` (neutral: 1) or,
    when given, at a continuous `intensity` (each part scaled between neutral and its top level)."""
    parts = []
    for item in text.split(","):
        name, _, weight = item.strip().partition(":")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise ValueError(f"emotion {item!r}: the weight after ':' must be a number") from None
        if value < 0:
            raise ValueError(f"emotion {item!r}: weights must not be negative")
        parts.append((name.strip(), value))
    total = sum(w for _, w in parts)
    if total <= 0:
        raise ValueError(f"emotion {text!r}: the weights sum to 0")
    if intensity is not None:
        mixed: list[tuple[str, int, float]] = []
        for name, w in parts:
            mixed += [(e, lv, w / total * v) for e, lv, v in intensity_mix(name, intensity).parts]
        return EmotionMix(tuple(mixed))
    out = []
    for name, w in parts:
        lv = 1 if name == "neutral" else level
        check_emotion(name, lv)
        out.append((name, lv, w / total))
    return EmotionMix(tuple(out))


def read_emotion_schedule(path: str | Path, level: int = 3) -> list[tuple[float, EmotionMix]]:
    """A schedule file: one `SECONDS EMOTION` line per change (EMOTION as in --emotion, mixtures allowed; `#`
    comments), times increasing from 0."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such emotion schedule")
    schedule: list[tuple[float, EmotionMix]] = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{path}:{number}: expected `SECONDS EMOTION`, got {raw!r}")
        try:
            seconds = float(fields[0])
        except ValueError:
            raise ValueError(f"{path}:{number}: {fields[0]!r} is not a time in seconds") from None
        if schedule and seconds <= schedule[-1][0]:
            raise ValueError(f"{path}:{number}: times must increase ({seconds} after {schedule[-1][0]})")
        try:
            schedule.append((seconds, parse_emotion(fields[1], level)))
        except ValueError as e:
            raise ValueError(f"{path}:{number}: {e}") from None
    if not schedule:
        raise ValueError(f"{path}: the emotion schedule is empty")
    if schedule[0][0] != 0:
        raise ValueError(f"{path}: the first change must be at 0 s, not {schedule[0][0]}")
    return schedule


def mix_vector(generator: EmoDiffGenerator, mix: EmotionMix, *, style_from: str = "bank",
               style: torch.Tensor | None = None, style_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(1, dim) emotion vector of a mixture: the weighted sum of its parts' vectors."""
    device = generator.bs_mean.device
    vector = 0
    for emotion, level, weight in mix.parts:
        e, lv = check_emotion(emotion, level)
        vector = vector + weight * generator.emotion_vector(
            torch.tensor([e], device=device), torch.tensor([lv], device=device), style_from=style_from,
            style=style, style_mask=style_mask)
    return vector


def schedule_vectors(generator: EmoDiffGenerator, schedule: list[tuple[float, EmotionMix]], frames: int,
                     fps: float, *, transition: float = 0.5, **style: object) -> torch.Tensor:
    """(1, T, dim) per-frame emotion vectors: each scheduled mixture from its time on, cross-faded linearly over
    `transition` seconds centred on each change (smooth across autoregressive windows)."""
    vectors = [mix_vector(generator, mix, **style)[0] for _, mix in schedule]
    times = torch.arange(frames, dtype=torch.float32, device=generator.bs_mean.device) / fps
    out = vectors[0].expand(frames, -1).clone()
    for (start, _), vector in zip(schedule[1:], vectors[1:]):
        weight = ((times - start) / transition + 0.5).clamp(0, 1)[:, None] if transition > 0 else (
            (times >= start).float()[:, None])
        out = (1 - weight) * out + weight * vector
    return out[None]
