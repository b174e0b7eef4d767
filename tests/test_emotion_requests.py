"""Emotion requests: mixtures, continuous intensity, schedules, and their errors (fast; a tiny untrained generator)."""

from __future__ import annotations

import logging

import pytest
import torch

from lightning_modules.emotion_requests import (intensity_mix, mix_vector, parse_emotion, read_emotion_schedule,
                                                schedule_vectors)
from lightning_modules.networks.emodiff_denoiser import EmoDiffDenoiser
from lightning_modules.networks.emodiff_generator import EmoDiffGenerator


def test_mixtures_are_normalised_and_levels_checked():
    assert parse_emotion("happy:3,surprised:1").parts == (("happy", 3, 0.75), ("surprised", 3, 0.25))
    assert parse_emotion("neutral", level=3).parts == (("neutral", 1, 1.0),)
    with pytest.raises(ValueError, match="unknown emotion 'joyful'"):
        parse_emotion("joyful")
    with pytest.raises(ValueError, match="weight after ':' must be a number"):
        parse_emotion("happy:lots")
    with pytest.raises(ValueError, match="levels"):
        parse_emotion("sad", level=4)


def test_intensity_runs_from_neutral_to_the_top_level_and_clamps_with_a_warning(caplog):
    assert intensity_mix("sad", 0.25).parts == (("neutral", 1, 0.75), ("sad", 3, 0.25))
    with caplog.at_level(logging.WARNING):
        assert intensity_mix("sad", 1.4).parts == (("neutral", 1, 0.0), ("sad", 3, 1.0))
    assert "intensity 1.4 is outside [0, 1]" in caplog.text


def test_schedule_files_name_the_line_of_a_problem(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("# start happy\n0 happy\n2.5 sad:0.5,angry:0.5\n")
    schedule = read_emotion_schedule(good)
    assert [t for t, _ in schedule] == [0.0, 2.5] and schedule[1][1].parts[0] == ("sad", 3, 0.5)
    for text, message in [("0 happy\n1 joyful\n", r"bad.txt:2: unknown emotion 'joyful'"),
                          ("0 happy\n2 sad\n1 angry\n", r"bad.txt:3: times must increase"),
                          ("1 happy\n", r"bad.txt: the first change must be at 0 s"),
                          ("0 happy sad\n", r"bad.txt:1: expected `SECONDS EMOTION`")]:
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(ValueError, match=message):
            read_emotion_schedule(bad)
    with pytest.raises(FileNotFoundError, match="missing.txt: no such emotion schedule"):
        read_emotion_schedule(tmp_path / "missing.txt")


def test_mixture_and_schedule_vectors_are_the_weighted_label_vectors():
    torch.manual_seed(0)
    generator = EmoDiffGenerator(EmoDiffDenoiser(4, dim=16, layers=1, heads=2))
    happy, sad = (mix_vector(generator, parse_emotion(e), style_from="label") for e in ("happy", "sad"))
    torch.testing.assert_close(mix_vector(generator, parse_emotion("happy:0.6,sad:0.4"), style_from="label"),
                               0.6 * happy + 0.4 * sad)
    frames = schedule_vectors(generator, [(0.0, parse_emotion("happy")), (2.0, parse_emotion("sad"))], 100, 25.0,
                              transition=0.5, style_from="label")[0]
    torch.testing.assert_close(frames[0], happy[0])
    torch.testing.assert_close(frames[99], sad[0])
    torch.testing.assert_close(frames[50], (happy[0] + sad[0]) / 2)  # the cross-fade is centred on the change
    assert torch.equal(frames[43], happy[0]) and torch.equal(frames[57], sad[0])  # and 0.5 s long
    with pytest.raises(ValueError, match="style bank has no entry"):
        mix_vector(generator, parse_emotion("happy"), style_from="bank")
