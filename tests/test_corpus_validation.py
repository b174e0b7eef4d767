"""Corpus validation's finer rules: the speaker split's defaults, the track rate, the duration tolerance at its edge,
where fail mode stops (serial and pooled), stray and misplaced files, and what skip mode logs and reports."""

from __future__ import annotations

import io
import json
import logging
from concurrent.futures import CancelledError
from pathlib import Path

import numpy as np
import pytest
from test_corpus import add_clip, base_corpus, random_track, write_npy, write_tone

from datamodules.corpus import scan_corpus, split_by_speakers
from datamodules.tracks import CorpusError

SPEAKERS = ["M001", "M002", "M003", "W001", "W002"]


def config_string(text: str) -> str:
    """`text` as a string read from a config file is: equal to the literal but another object."""
    copy = "".join(list(text))
    assert copy == text and copy is not text
    return copy


def nan_clip(root: Path, speaker: str, sentence: str) -> Path:
    audio, track = add_clip(root, speaker, "neutral", 1, sentence)
    values = np.load(track)
    values[3, 7] = np.nan
    np.save(track, values)
    return track


def scan(root: Path, **kwargs):
    return scan_corpus(root, **{"val_speakers": 0, "test_speakers": 0, "progress": False, **kwargs})


# --- splits ----------------------------------------------------------------------------------------------

def test_speaker_split_defaults_hold_out_one_val_and_one_test_speaker_with_seed_0():
    split = split_by_speakers(SPEAKERS)
    assert split == split_by_speakers(SPEAKERS, 1, 1, seed=0) != split_by_speakers(SPEAKERS, 1, 1, seed=1)
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (3, 1, 1)
    assert split_by_speakers(SPEAKERS, ["M002"], ["W001"]) == \
        {"train": ["M001", "M003", "W002"], "val": ["M002"], "test": ["W001"]}
    with pytest.raises(ValueError, match=r"val_speakers: a count of speakers cannot be negative \(-1\)"):
        split_by_speakers(SPEAKERS, -1, 1)
    with pytest.raises(ValueError) as error:
        split_by_speakers(SPEAKERS, ["M001", "M002"], ["M002", "M003"])
    assert str(error.value) == "speakers ['M002'] are in both val_speakers and test_speakers"
    assert split_by_speakers(SPEAKERS, 2, 3)["train"] == []  # every speaker may be held out (with a warning)


def test_the_scan_splits_with_seed_0_by_default(tmp_path: Path):
    root = tmp_path / "corpus"
    for speaker in SPEAKERS:
        add_clip(root, speaker, "neutral", 1, "001", 0.3)
    assert scan_corpus(root, progress=False).splits == split_by_speakers(SPEAKERS, 1, 1, seed=0)


def test_the_split_without_valid_clips_is_named_in_a_warning(tmp_path: Path, caplog):
    root = tmp_path / "corpus"
    add_clip(root, "M001", "neutral", 1, "001")
    nan_clip(root, "M002", "001")
    nan_clip(root, "M003", "001")
    with caplog.at_level(logging.WARNING, logger="datamodules.corpus"):
        manifest = scan_corpus(root, val_speakers=["M002"], test_speakers=["M003"], on_error="skip", progress=False)
    assert [r.split for r in manifest.records] == ["train"]
    assert "the val split (speakers ['M002']) has no valid clips" in caplog.text
    assert "the test split (speakers ['M003']) has no valid clips" in caplog.text
    assert "the train split" not in caplog.text


# --- the track rate and the duration tolerance -----------------------------------------------------------

@pytest.mark.parametrize("fps", [-25, 0, True, "25"])
def test_a_track_rate_given_that_is_not_a_positive_number_is_refused_naming_the_root(tmp_path: Path, fps):
    root = base_corpus(tmp_path / "corpus")
    with pytest.raises(CorpusError) as error:
        scan(root, fps=fps)
    assert str(error.value) == f"{root}: the track fps must be a positive number, not {fps!r}"


def test_a_track_rate_read_from_corpus_json_that_is_not_positive_names_corpus_json(tmp_path: Path):
    root = base_corpus(tmp_path / "corpus")
    (root / "CORPUS.json").write_text(json.dumps({"fps": -30}))
    with pytest.raises(CorpusError) as error:
        scan(root)
    assert str(error.value) == f"{root / 'CORPUS.json'}: the track fps must be a positive number, not -30"


def test_a_slow_track_rate_is_still_a_rate(tmp_path: Path):
    root = tmp_path / "corpus"
    write_tone(root / "M001/audio/neutral/level_1/001.wav", 4.0)
    write_npy(root / "M001/arkit/neutral/level_1/001.npy", random_track(2))
    assert scan(root, fps=0.5).records[0].fps == 0.5


def test_the_duration_tolerance_is_at_least_two_frames_and_includes_its_edge(tmp_path: Path):
    root = tmp_path / "corpus"
    audio = write_tone(root / "M001/audio/neutral/level_1/001.wav", 1.0)
    track = write_npy(root / "M001/arkit/neutral/level_1/001.npy", random_track(10))  # 1.25 s at 8 fps
    assert scan(root, fps=8).records[0].frames == 10  # 0.25 s apart: exactly 2 frames, accepted
    write_npy(track, random_track(11))
    with pytest.raises(CorpusError) as error:
        scan(root, fps=8)
    assert str(error.value) == (f"{track}: audio and track durations disagree: audio 1.000 s ({audio}) but track "
                                "1.375 s (11 frames at 8 fps), 0.375 s apart (tolerance 0.250 s)")
    write_npy(track, random_track(29))  # 1.16 s at 25 fps: 4 frames, inside the default 0.2 s
    assert scan(root, fps=25).records[0].frames == 29


def test_a_track_header_that_asks_for_terabytes_is_an_error_of_its_clip(tmp_path: Path):
    root = base_corpus(tmp_path / "corpus")
    track = root / "M001/arkit/neutral/level_1/002.npy"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (2**40, 52)})
    track.write_bytes(header.getvalue() + bytes(100))
    manifest = scan(root, on_error="skip")
    assert len(manifest.records) == 2
    assert manifest.skipped[0]["file"] == str(track) and "MemoryError while validating clip" in \
        manifest.skipped[0]["problem"]


# --- where fail mode stops -------------------------------------------------------------------------------

def test_fail_mode_stops_at_the_first_bad_clip(tmp_path: Path):
    root = base_corpus(tmp_path / "corpus")
    first, _ = nan_clip(root, "M001", "003"), nan_clip(root, "M001", "004")
    with pytest.raises(CorpusError) as error:
        scan(root, on_error=config_string("fail"), report_path=tmp_path / "report.json")
    assert error.value.path == str(first)
    report = json.loads((tmp_path / "report.json").read_text())
    assert [p["file"] for p in report["problems"]] == [str(first)] and report["clips"] == 2


def test_fail_mode_stops_at_a_layout_problem_before_opening_any_clip(tmp_path: Path):
    root = base_corpus(tmp_path / "corpus")
    (root / "M001/audio/bored").mkdir()
    with pytest.raises(CorpusError, match="unknown emotion folder 'bored'"):
        scan(root, on_error=config_string("fail"), report_path=tmp_path / "report.json")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["clips"] == 0 and [p["kind"] for p in report["problems"]] == ["unknown_emotion"]


def test_fail_mode_in_a_pool_stops_after_the_first_bad_batch(tmp_path: Path):
    root = tmp_path / "corpus"
    for sentence in range(24):  # three batches of 8
        add_clip(root, "M001", "neutral", 1, f"{sentence:03d}", 0.3)
    second, first, _ = nan_clip(root, "M001", "005"), nan_clip(root, "M001", "002"), nan_clip(root, "M001", "020")
    try:
        scan(root, workers=1, report_path=tmp_path / "report.json")
    except CancelledError:  # the batches cancelled after the bad one must not be waited for
        pytest.fail("fail mode in a pool waited for a cancelled batch")
    except CorpusError as error:
        assert error.path == str(first)
    else:
        pytest.fail("a bad clip passed")
    report = json.loads((tmp_path / "report.json").read_text())
    assert [p["file"] for p in report["problems"]] == [str(first), str(second)]  # the first batch's, in order


# --- the layout ------------------------------------------------------------------------------------------

def test_a_bad_level_folder_does_not_hide_the_next_ones(tmp_path: Path):
    root = base_corpus(tmp_path / "corpus")
    (root / "M002/audio/angry/level_0").mkdir()
    manifest = scan(root, on_error="skip")
    assert [r.clip_id for r in manifest.records] == \
        ["M001_neutral_level_1_001", "M001_neutral_level_1_002", "M002_angry_level_2_001"]
    assert [p["kind"] for p in manifest.skipped] == ["bad_level"]


@pytest.mark.parametrize(("emotion", "level", "rule"), [("neutral", 2, "neutral at level_1 only"),
                                                         ("angry", 4, "levels level_1 to level_3"),
                                                         ("sad", 4, "levels level_1 to level_3")])
def test_a_level_beyond_the_emotions_is_explained(tmp_path: Path, emotion, level, rule):
    root = base_corpus(tmp_path / "corpus")
    folder = root / f"M001/audio/{emotion}/level_{level}"
    folder.mkdir(parents=True)
    with pytest.raises(CorpusError) as error:
        scan(root)
    assert str(error.value) == f"{folder}: unknown level {level} for {emotion}: MEAD has {rule}"


def test_an_audio_file_outside_a_level_folder_is_misplaced_and_other_files_are_ignored(tmp_path: Path, caplog):
    root = base_corpus(tmp_path / "corpus")
    (root / "M001/audio/a_stray.wav").write_bytes(b"x")  # sorts before the emotion folders
    (root / "M001/audio/README.txt").write_text("about the takes")  # a README anywhere is not part of the corpus
    (root / "M001/audio/neutral/a_notes.txt").write_text("notes")  # sorts before the level folders
    for take in ("take.txt", "take2.txt", "take3.txt"):
        (root / "M001/audio/neutral/level_1" / take).write_text("notes")
    (root / "M001/audio/neutral/level_1/._001.wav").write_bytes(b"x")  # macOS's AppleDouble file: hidden
    with caplog.at_level(logging.WARNING, logger="datamodules.corpus"):
        manifest = scan(root, on_error="skip")
    assert [(p["file"], p["kind"]) for p in manifest.skipped] == [(str(root / "M001/audio/a_stray.wav"),
                                                                   "misplaced_file")]
    assert len(manifest) == 3
    examples = [str(root / "M001/audio/neutral" / name) for name in
                ("a_notes.txt", "level_1/take.txt", "level_1/take2.txt")]
    assert f"ignored 4 files and folders that are not part of the layout, e.g. {examples}" in caplog.text


def test_a_speaker_with_tracks_only_is_a_speaker_with_missing_audio(tmp_path: Path):
    root = base_corpus(tmp_path / "corpus")
    track = write_npy(root / "W001/arkit/happy/level_1/001.npy", random_track(25))
    with pytest.raises(CorpusError) as error:
        scan(root)
    assert error.value.kind == "missing_audio" and error.value.path == str(track)


def test_two_tracks_for_one_clip_skip_it_and_only_it(tmp_path: Path):
    root = base_corpus(tmp_path / "corpus")
    _, track = add_clip(root, "M001", "neutral", 1, "000")
    track.with_suffix(".csv").write_text("Timecode\n")  # the same clip as a Live Link CSV too (never opened)
    manifest = scan(root, on_error="skip")
    assert [r.clip_id for r in manifest.records] == \
        ["M001_neutral_level_1_001", "M001_neutral_level_1_002", "M002_angry_level_2_001"]
    assert [p["kind"] for p in manifest.skipped] == ["duplicate"]


def test_a_clean_corpus_logs_no_warning(tmp_path: Path, caplog):
    root = base_corpus(tmp_path / "corpus")
    with caplog.at_level(logging.WARNING, logger="datamodules.corpus"):
        manifest = scan(root)
    assert len(manifest) == 3 and not manifest.synthetic  # CORPUS.json absent: not marked synthetic
    assert caplog.text == ""
    assert len(scan(root, workers=-1)) == 3  # no pool for a count below 1


# --- what skip mode says ---------------------------------------------------------------------------------

def test_skip_mode_logs_the_count_the_report_and_the_first_problem(tmp_path: Path, caplog):
    root = base_corpus(tmp_path / "corpus")
    first, second = nan_clip(root, "M001", "003"), nan_clip(root, "M001", "004")
    report = tmp_path / "report.json"
    with caplog.at_level(logging.WARNING, logger="datamodules.corpus"):
        scan(root, on_error="skip", report_path=report)
        scan(root, on_error="skip")
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings[0].startswith(f"{root}: skipped 2 problem clip(s) or folder(s) {{'non_finite': 2}}, report in "
                                  f"{report}; first: {first}: ")
    assert warnings[1].startswith(f"{root}: skipped 2 problem clip(s) or folder(s) {{'non_finite': 2}}; first: "
                                  f"{first}: ")
    assert str(second) not in warnings[0] + warnings[1]


def test_a_corpus_without_one_valid_clip_names_its_first_problem(tmp_path: Path):
    root = tmp_path / "corpus"
    first, second = nan_clip(root, "M001", "001"), nan_clip(root, "M001", "002")
    with pytest.raises(CorpusError) as error:
        scan(root, on_error="skip")
    assert str(error.value).startswith(f"{root}: no valid clips (2 problems, first: {first}: ")
    assert str(second) not in str(error.value)


def test_the_report_states_the_declared_order_and_only_an_undeclared_one_is_logged(tmp_path: Path, caplog):
    root = base_corpus(tmp_path / "corpus")
    with caplog.at_level(logging.INFO, logger="datamodules.corpus"):
        scan(root)
    assert "CORPUS.json does not state arkit_order" in caplog.text
    caplog.clear()
    (root / "CORPUS.json").write_text(json.dumps({"arkit_order": "apple"}))
    with caplog.at_level(logging.INFO, logger="datamodules.corpus"):
        scan(root, report_path=tmp_path / "report.json")
    assert "arkit_order" not in caplog.text
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["arkit_order"], report["arkit_order_stated"]) == ("apple", True)
    assert report["arkit_order_note"] == "CORPUS.json states arkit_order 'apple'"


def test_scan_options_are_keywords(tmp_path: Path):
    root = base_corpus(tmp_path / "corpus")
    with pytest.raises(TypeError):
        scan_corpus(root, 25.0)  # a rate taken positionally could be mistaken for another option
    assert len(scan_corpus(root=root, val_speakers=0, test_speakers=0, progress=False)) == 3


def test_the_scan_shows_its_progress_unless_asked_not_to(tmp_path: Path, capfd):
    root = base_corpus(tmp_path / "corpus")
    scan_corpus(root, val_speakers=0, test_speakers=0)
    assert "validating corpus: 100%" in capfd.readouterr().err
    scan(root)
    assert "validating" not in capfd.readouterr().err
