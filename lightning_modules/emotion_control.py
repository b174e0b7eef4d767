"""How well EmoDiff's emotion control works on held-out speakers: the demo's blendshape emotion judge asked
whether it sees the requested emotion, and how far each level moves the face from the speaker's neutral.

The protocol: neutral sentences of the held-out speakers (their audio carries no emotion), each asked for every
emotion; the judge's argmax and its confidence in the asked emotion per sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from datamodules.blendshape_dataset import Clip
from dtl_foundation.arkit import NUM_BLENDSHAPES
from dtl_foundation.mead import EMOTION_INDEX, EMOTIONS
from lightning_modules.emotion_requests import EmotionMix, intensity_mix, mix_vector

STYLE_FROM_CHOICES = ("bank", "label", "clip")


@dataclass
class ControlScores:
    """Per-sample judge verdicts of one request setting, and their summaries."""

    asked: list[str] = field(default_factory=list)
    levels: list[int] = field(default_factory=list)
    recognised: list[bool] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)
    log_odds: list[float] = field(default_factory=list)
    """log p / (1 - p) of the asked emotion: the judge's confidence where its probability saturates near 1."""
    magnitude: list[float] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.recognised))

    def mean(self, values: str, emotion: str, level: int) -> float:
        picked = [v for v, e, lv in zip(getattr(self, values), self.asked, self.levels) if e == emotion and lv == level]
        return float(np.mean(picked))


def heldout_neutral_clips(clips: list[Clip], count: int = 6) -> list[Clip]:
    """The first `count` neutral sentences (by speaker, sentence) of a held-out split."""
    neutral = sorted((c for c in clips if c.emotion == "neutral"), key=lambda c: (c.speaker, c.sentence))
    if len(neutral) < count:
        raise ValueError(f"the held-out split has {len(neutral)} neutral clips, {count} asked")
    return neutral[:count]


def emotion_coefficients(train_clips: list[Clip], top: int = 6) -> dict[str, np.ndarray]:
    """Per emotion, the `top` coefficients its top level moves most from neutral in the training corpus."""
    def mean_of(emotion: str, level: int) -> np.ndarray:
        tracks = [c.blendshapes for c in train_clips if c.emotion == emotion and c.level == level]
        return np.concatenate(tracks).mean(0)

    neutral = mean_of("neutral", 1)
    return {e: np.argsort(-np.abs(mean_of(e, 3) - neutral))[:top] for e in EMOTIONS if e != "neutral"}


def speaker_neutral(clips: list[Clip]) -> dict[str, np.ndarray]:
    """Per speaker, the mean expression of its neutral clips."""
    speakers = {c.speaker for c in clips}
    return {s: np.concatenate([c.blendshapes for c in clips if c.speaker == s and c.emotion == "neutral"]).mean(0)
            for s in speakers}


def neutral_spread(train_clips: list[Clip], neutral: dict[str, np.ndarray],
                   coefficients: dict[str, np.ndarray]) -> float:
    """The corpus's own neutral spread as a held-out speaker sees it: the mean distance of the training
    speakers' neutral clips from that speaker's neutral, in each emotion's coefficients. A generated neutral
    face (which cannot know the new speaker's neutral) within it is as neutral as the corpus's own."""
    return float(np.mean([expression_magnitude(c.blendshapes, e, speaker, neutral, coefficients)
                          for speaker in neutral for c in train_clips if c.emotion == "neutral"
                          for e in coefficients]))


def request_batch(clips: list[Clip], emotion: str, level: int, model, *, style_frames: int,
                  reference: Clip | None = None) -> dict[str, torch.Tensor]:
    """The neutral clips' audio asked for (emotion, level): labels, a reference clip when given (its first frame
    as the initial expression), else no style clip and an unknown initial expression."""
    b, frames = len(clips), max(len(c.audio) for c in clips)
    audio = torch.zeros(b, frames, clips[0].audio.shape[1])
    mask = torch.zeros(b, frames, dtype=torch.bool)
    for i, c in enumerate(clips):
        audio[i, : len(c.audio)] = torch.from_numpy(c.audio)
        mask[i, : len(c.audio)] = True
    style = torch.zeros(b, style_frames, NUM_BLENDSHAPES)
    style_mask = torch.zeros(b, style_frames, dtype=torch.bool)
    init = model.denormalize(torch.zeros(b, NUM_BLENDSHAPES))  # the corpus mean expression
    if reference is not None:
        n = min(len(reference.blendshapes), style_frames)
        style[:, :n] = torch.from_numpy(reference.blendshapes[:n])
        style_mask[:, :n] = True
        init = torch.from_numpy(reference.blendshapes[:1]).expand(b, -1)
    return {"audio": audio, "mask": mask, "style": style, "style_mask": style_mask, "init": init,
            "init_known": torch.full((b,), reference is not None), "emotion": torch.full((b,), EMOTION_INDEX[emotion]),
            "level": torch.full((b,), level)}


@torch.no_grad()
def score_emotion_control(model, judge: torch.nn.Module, clips: list[Clip], *, style_from: str, guidance: float,
                          steps: int = 10, levels: tuple[int, ...] = (3,), style_frames: int = 64,
                          references: dict[tuple[str, int], Clip] | None = None, neutral: dict | None = None,
                          coefficients: dict[str, np.ndarray] | None = None, ablate_label: bool = False,
                          intensity: float | None = None, seed: int = 0) -> ControlScores:
    """Every emotion (at each of `levels`; neutral at 1) asked of the held-out neutral clips, judged.

    style_from: bank (the checkpoint's style bank), label (labels only), clip (`references[(emotion, level)]`).
    ablate_label replaces every label-derived condition by the null vector (what a model that ignores labels
    does), so the judge must fall to chance. `intensity` asks the continuous intensity instead of the level.
    """
    if style_from not in STYLE_FROM_CHOICES:
        raise ValueError(f"style_from must be one of {STYLE_FROM_CHOICES}, not {style_from!r}")
    scores = ControlScores()
    for emotion in EMOTIONS:
        for level in ((1,) if emotion == "neutral" else levels):
            reference = references[(emotion, level)] if style_from == "clip" else None
            batch = request_batch(clips, emotion, level, model, style_frames=style_frames, reference=reference)
            b = len(clips)
            if ablate_label:
                batch["emotion_vector"] = model.denoiser.null_vector(b)
            elif intensity is not None or style_from == "bank":
                mix = (EmotionMix(((emotion, level, 1.0),)) if intensity is None
                       else intensity_mix(emotion, intensity))
                batch["emotion_vector"] = mix_vector(model, mix, style_from=style_from).expand(b, -1)
            generator = torch.Generator().manual_seed(seed + EMOTION_INDEX[emotion] * 10 + level)
            tracks = model.generate(batch, steps=steps, guidance_scale=guidance, generator=generator)
            logits = judge(tracks, batch["mask"])
            probabilities = logits.softmax(-1)
            target = EMOTION_INDEX[emotion]
            others = torch.cat([logits[:, :target], logits[:, target + 1:]], dim=1)
            log_odds = logits[:, target] - others.logsumexp(1)
            for i, clip in enumerate(clips):
                scores.asked.append(emotion)
                scores.levels.append(level)
                scores.recognised.append(int(probabilities[i].argmax()) == target)
                scores.confidence.append(float(probabilities[i, target]))
                scores.log_odds.append(float(log_odds[i]))
                scores.magnitude.append(expression_magnitude(tracks[i, : len(clip.audio)].numpy(), emotion,
                                                             clip.speaker, neutral, coefficients))
    return scores


def expression_magnitude(track: np.ndarray, emotion: str, speaker: str, neutral: dict | None,
                         coefficients: dict[str, np.ndarray] | None) -> float:
    """Mean distance from the speaker's neutral in the emotion's own coefficients (nan without references)."""
    if neutral is None or coefficients is None or emotion == "neutral":
        return float("nan")
    idx = coefficients[emotion]
    return float(np.abs(track[:, idx] - neutral[speaker][idx]).mean())


@torch.no_grad()
def windowed_predictions(judge: torch.nn.Module, track: torch.Tensor, window: int, hop: int) -> list[tuple[int, int]]:
    """(centre frame, judged emotion index) of each `window`-frame stretch of a (T, 52) track, every `hop` frames."""
    starts = list(range(0, len(track) - window + 1, hop))
    pieces = torch.stack([track[s:s + window] for s in starts])
    predicted = judge(pieces, torch.ones(pieces.shape[:2], dtype=torch.bool)).argmax(-1)
    return [(s + window // 2, int(p)) for s, p in zip(starts, predicted)]


def schedule_lag(predictions: list[tuple[int, int]], changes: list[tuple[int, int]]) -> float:
    """Frames the judged emotion trails a schedule of (frame, emotion index) changes: for each stretch that the
    schedule holds, how long after its start the prediction first agrees and stays agreed until its end."""
    worst = 0
    for i, (start, emotion) in enumerate(changes):
        stop = changes[i + 1][0] if i + 1 < len(changes) else predictions[-1][0] + 1
        inside = [(c, p) for c, p in predictions if start <= c < stop]
        agreed_from = stop
        for c, p in reversed(inside):
            if p != emotion:
                break
            agreed_from = c
        worst = max(worst, agreed_from - start)
    return float(worst)
