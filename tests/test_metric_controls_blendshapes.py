"""Negative controls for the blendshape metrics on the demo corpus's ARKit tracks and speech: the ground-truth track
(positive) must beat a frozen face, the track moved 15 frames against its speech, another sentence's track and
(upper face) exaggerated motion, by a margin; each check fails once the metric under test returns a constant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from controls_helpers import assert_fails_when_constant, assert_ranks

from datamodules.arkit import indices
from datamodules.audio import load_audio
from datamodules.corpus import load_track
from datamodules.features import FeatureConfig, compute_features, frame_loudness_db
from datamodules.mead import EMOTIONS
from metrics.blendshape import AudioMouthSync, EmotionAccuracy, MouthError, UpperFaceDynamicsDeviation

LEVEL = "level_3"


def speaker_clips(corpus: Path, sentence: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """(B, T, 52) tracks, (B, T) loudness, (B, T) mask and the emotions of one speaker's level-3 (and neutral)
    clips of one sentence, cut to the shortest."""
    speaker = sorted(p for p in corpus.iterdir() if (p / "arkit").is_dir())[0]
    cfg = FeatureConfig()
    tracks, loudness, emotions = [], [], []
    for emotion in EMOTIONS:
        level = "level_1" if emotion == "neutral" else LEVEL
        track, fps = load_track(speaker / "arkit" / emotion / level / f"{sentence}.npy")
        wave = load_audio(speaker / "audio" / emotion / level / f"{sentence}.wav")
        tracks.append(track)
        loudness.append(frame_loudness_db(compute_features(wave, fps, cfg, num_frames=len(track)), cfg))
        emotions.append(emotion)
    length = min(len(t) for t in tracks)
    stack = torch.tensor(np.stack([t[:length] for t in tracks]), dtype=torch.float32)
    loud = torch.tensor(np.stack([x[:length] for x in loudness]), dtype=torch.float32)
    return stack, loud, torch.ones(stack.shape[:2], dtype=torch.bool), emotions


@pytest.fixture(scope="module")
def clips(tiny_corpus) -> dict:
    tracks, loudness, mask, emotions = speaker_clips(tiny_corpus, "001")
    other, _, _, _ = speaker_clips(tiny_corpus, "002")
    length = min(tracks.shape[1], other.shape[1])
    tracks, loudness, mask, other = tracks[:, :length], loudness[:, :length], mask[:, :length], other[:, :length]
    rng = np.random.default_rng(0)
    upper = indices("upper_face")
    exaggerated = tracks.clone()
    mean = tracks[..., upper].mean(1, keepdim=True)
    exaggerated[..., upper] = (mean + 3 * (tracks[..., upper] - mean)).clamp(0, 1)
    return {"loudness": loudness, "mask": mask, "emotions": emotions, "truth": tracks, "controls": {
        "faithful": (tracks + torch.tensor(rng.normal(0, 0.005, tracks.shape), dtype=torch.float32)).clamp(0, 1),
        "frozen": tracks[:, :1].expand_as(tracks).clone(),
        "late_15": torch.cat([tracks[:, :1].expand(-1, 15, -1), tracks[:, :-15]], dim=1),
        "other_sentence": other,
        "exaggerated_upper_face": exaggerated}}


def test_mouth_error_ranks_the_true_mouth_above_frozen_late_and_another_sentence(clips, monkeypatch):
    def check() -> None:
        values = {}
        for name in ("faithful", "frozen", "late_15", "other_sentence"):
            metric = MouthError()
            metric.update(clips["controls"][name], clips["truth"], clips["mask"])
            values[name] = float(metric.compute())
        assert_ranks(values, "faithful", ["frozen", "late_15", "other_sentence"], margin=0.01, better="min")

    check()
    assert_fails_when_constant(check, monkeypatch, MouthError, "compute", lambda self: torch.tensor(0.05))


def test_audio_mouth_sync_ranks_the_true_mouth_above_frozen_late_and_another_sentence(clips, monkeypatch):
    def check() -> None:
        values = {}
        for name in ("faithful", "frozen", "late_15", "other_sentence"):
            metric = AudioMouthSync()
            metric.update(clips["controls"][name], clips["loudness"], clips["mask"])
            values[name] = float(metric.compute()["sync"])
        assert_ranks(values, "faithful", ["frozen", "late_15", "other_sentence"], margin=0.2, better="max")

    check()
    assert_fails_when_constant(check, monkeypatch, AudioMouthSync, "compute",
                               lambda self: {"sync": torch.tensor(0.5), "lag": torch.tensor(0.0)})


def test_upper_face_dynamics_deviation_ranks_the_truth_above_a_frozen_and_an_exaggerated_face(clips, monkeypatch):
    def check() -> None:
        values = {}
        for name in ("faithful", "frozen", "exaggerated_upper_face"):
            metric = UpperFaceDynamicsDeviation()
            metric.update(clips["controls"][name], clips["truth"], clips["mask"])
            values[name] = float(metric.compute())
        assert_ranks(values, "faithful", ["frozen", "exaggerated_upper_face"], margin=0.002, better="min")

    check()
    assert_fails_when_constant(check, monkeypatch, UpperFaceDynamicsDeviation, "compute",
                               lambda self: torch.tensor(0.01))


@pytest.mark.slow
def test_blendshape_emotion_judge_ranks_the_asked_emotion_above_neutral_and_frozen_tracks(
        clips, trained_emotion_classifier, monkeypatch):
    from lightning_modules.emotion_classifier import BlendshapeEmotionClassifier

    judge = BlendshapeEmotionClassifier.load_frozen(trained_emotion_classifier["checkpoint"])
    emotions = clips["emotions"]
    expressive = [i for i, e in enumerate(emotions) if e != "neutral"]
    neutral = emotions.index("neutral")
    asked = torch.tensor([EMOTIONS.index(emotions[i]) for i in expressive])
    truth, mask = clips["truth"], clips["mask"]
    candidates = {"faithful": truth[expressive], "neutral_track": truth[[neutral] * len(expressive)],
                  "frozen": clips["controls"]["frozen"][expressive]}

    def check() -> None:
        values = {}
        for name, tracks in candidates.items():
            metric = EmotionAccuracy(judge)
            metric.update(tracks, mask[expressive], asked)
            values[name] = float(metric.compute()["confidence"])
        assert_ranks(values, "faithful", ["neutral_track", "frozen"], margin=0.2, better="max")

    check()
    assert_fails_when_constant(check, monkeypatch, judge, "forward",
                               lambda blendshapes, mask: torch.zeros(blendshapes.shape[0], len(EMOTIONS)))
