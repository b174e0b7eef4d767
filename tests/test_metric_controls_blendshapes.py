"""Negative controls for the blendshape metrics on the demo corpus's ARKit tracks and speech: the ground-truth track
(positive) must beat a frozen face, the track moved 15 frames against its speech, another sentence's track and
(upper face) exaggerated motion, by a margin; each check fails once the metric under test returns a constant."""

from __future__ import annotations

import pytest
import torch
from controls_helpers import assert_fails_when_constant, assert_ranks

from dtl_foundation.mead import EMOTIONS
from experiments.evaluate.blendshape_controls import control_tracks
from metrics.blendshape import AudioMouthSync, EmotionAccuracy, MouthError, UpperFaceDynamicsDeviation


@pytest.fixture(scope="module")
def clips(tiny_corpus) -> dict:
    return control_tracks(tiny_corpus)


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
def test_blendshape_emotion_judge_ranks_the_asked_emotion_above_neutral_and_other_emotion_tracks(
        clips, trained_emotion_classifier, monkeypatch):
    from lightning_modules.emotion_classifier import BlendshapeEmotionClassifier

    judge = BlendshapeEmotionClassifier.load_frozen(trained_emotion_classifier["checkpoint"])
    emotions = clips["emotions"]
    expressive = [i for i, e in enumerate(emotions) if e != "neutral"]
    neutral = emotions.index("neutral")
    asked = torch.tensor([EMOTIONS.index(emotions[i]) for i in expressive])
    truth, mask = clips["truth"], clips["mask"]
    candidates = {"faithful": truth[expressive], "neutral_track": truth[[neutral] * len(expressive)],
                  "other_emotion_track": truth[expressive[1:] + expressive[:1]]}

    def check() -> None:
        values = {}
        for name, tracks in candidates.items():
            metric = EmotionAccuracy(judge)
            metric.update(tracks, mask[expressive], asked)
            values[name] = float(metric.compute()["confidence"])
        assert_ranks(values, "faithful", ["neutral_track", "other_emotion_track"], margin=0.2, better="max")

    check()
    assert_fails_when_constant(check, monkeypatch, judge, "forward",
                               lambda blendshapes, mask: torch.zeros(blendshapes.shape[0], len(EMOTIONS)))
