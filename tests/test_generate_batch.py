"""Batch generation never overwrites: one name per input (talk.mp3 and talk.m4a both kept), a clash refused before
anything is written, `--skip-existing` leaves finished takes alone; CSVs at film and NTSC rates. Real speech (the
tiny demo corpus's espeak-ng sentences) through an EmoDiff run trained for two steps."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from dtl_foundation.arkit_live_link import read_live_link_csv, timecode_to_seconds
from experiments.generate import blendshapes as blendshapes_command
from experiments.generate.command import main as generate
from experiments.generate.take_files import input_stems


@pytest.fixture(scope="module")
def emodiff_run(tiny_emodiff_run) -> Path:
    return tiny_emodiff_run


@pytest.fixture(scope="module")
def talk(tiny_corpus, tmp_path_factory) -> dict[str, Path]:
    """One spoken sentence as talk.mp3 and talk.m4a, and another sentence as talk.wav in a sibling folder."""
    folder = tmp_path_factory.mktemp("talk")
    speech = sorted(tiny_corpus.glob("M001/audio/happy/level_3/*.wav"))
    files = {}
    for ext in ("mp3", "m4a"):
        files[ext] = folder / f"talk.{ext}"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(speech[0]), str(files[ext])],
                       check=True, timeout=60)
    files["other"] = folder / "other" / "talk.wav"
    files["other"].parent.mkdir()
    files["other"].write_bytes(speech[1].read_bytes())
    return files


def run(emodiff_run: Path, audio: list[Path], out: Path, *extra: str) -> int:
    return generate(["blendshapes", "--checkpoint", str(emodiff_run), "--audio", *map(str, audio), "--emotion", "happy",
                     "--level", "3", "--steps", "2", "--out", str(out), *extra])


def test_stems_tell_inputs_apart_only_where_they_clash(tmp_path):
    files = [tmp_path / "talk.mp3", tmp_path / "talk.m4a", tmp_path / "a" / "001.wav", tmp_path / "b" / "001.wav",
             tmp_path / "solo.wav"]
    assert input_stems(files) == ["talk_mp3", "talk_m4a", "a-001", "b-001", "solo"]
    with pytest.raises(ValueError, match="talk.mp3: given twice"):
        input_stems([tmp_path / "talk.mp3", tmp_path / "x" / ".." / "talk.mp3"])
    with pytest.raises(ValueError, match="would both be written as talk_mp3_"):
        input_stems([tmp_path / "talk.mp3", tmp_path / "talk.m4a", tmp_path / "talk_mp3.wav"])


@pytest.mark.slow
def test_talk_mp3_and_talk_m4a_both_kept_at_24_fps(emodiff_run, talk, tmp_path, capsys):
    assert run(emodiff_run, [talk["mp3"], talk["m4a"], talk["other"]], tmp_path, "--fps", "24") == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"{stem}_happy_level_3.{ext}" for stem in ("other-talk", "talk_m4a", "talk_mp3")
                     for ext in ("csv", "json")]
    for ext in ("mp3", "m4a"):
        assert f'"audio": "{talk[ext]}"' in (tmp_path / f"talk_{ext}_happy_level_3.json").read_text()
    take = read_live_link_csv(tmp_path / "talk_mp3_happy_level_3.csv", fps=24.0)
    assert take.timecodes[24] == "00:00:01:00.000" and take.timecodes[23] == "00:00:00:23.000"


@pytest.mark.slow
def test_without_unique_names_the_second_input_would_replace_the_first(emodiff_run, talk, tmp_path, monkeypatch,
                                                                        capsys):
    """The safeguard removed (each input named by its stem alone): one take is silently lost."""
    monkeypatch.setattr(blendshapes_command, "input_stems", lambda files: [Path(f).stem for f in files])
    assert run(emodiff_run, [talk["mp3"], talk["m4a"]], tmp_path) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk_happy_level_3.csv", "talk_happy_level_3.json"]


@pytest.mark.slow
def test_a_clash_is_refused_before_anything_is_written(emodiff_run, talk, tmp_path, capsys):
    assert run(emodiff_run, [talk["mp3"], talk["mp3"]], tmp_path / "out") == 2
    assert "given twice" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_skip_existing_leaves_finished_takes_alone(emodiff_run, talk, tmp_path, monkeypatch, capsys):
    batch = [talk["mp3"], talk["m4a"]]
    assert run(emodiff_run, batch, tmp_path) == 0
    done, unfinished = tmp_path / "talk_mp3_happy_level_3.csv", tmp_path / "talk_m4a_happy_level_3.csv"
    unfinished.with_suffix(".json").unlink()  # its request metadata is written last: as if the run had stopped
    before = done.stat().st_mtime_ns
    assert run(emodiff_run, batch, tmp_path, "--skip-existing") == 0
    assert done.stat().st_mtime_ns == before and "already there (--skip-existing)" in capsys.readouterr().out
    assert unfinished.with_suffix(".json").exists()  # the unfinished one was made
    assert run(emodiff_run, batch, tmp_path, "--skip-existing", "--seed", "5") == 1  # another request: refused
    assert "talk_mp3_happy_level_3.json: an earlier take of another request (seed differ)" in capsys.readouterr().err
    assert done.stat().st_mtime_ns == before
    monkeypatch.setattr(blendshapes_command, "take_finished", lambda path, request: False)  # the safeguard removed
    assert run(emodiff_run, batch, tmp_path, "--skip-existing") == 0
    assert done.stat().st_mtime_ns != before


@pytest.mark.slow
def test_29_97_fps_take_has_ntsc_timecodes_and_the_speech_duration(emodiff_run, talk, tmp_path, capsys):
    assert run(emodiff_run, [talk["other"]], tmp_path, "--fps", "29.97") == 0
    take = read_live_link_csv(tmp_path / "talk_happy_level_3.csv", fps=29.97)
    assert take.timecodes[29] == "00:00:00:29.000" and take.timecodes[30] == "00:00:01:00.000"
    seconds = np.array([timecode_to_seconds(tc, 29.97) for tc in take.timecodes])
    np.testing.assert_allclose(np.diff(seconds), 1 / 29.97)
    from dtl_foundation.media.audio import load_audio
    duration = len(load_audio(talk["other"], 16000)) / 16000
    assert abs(len(take.blendshapes) / 29.97 - duration) < 2 / 25


@pytest.mark.slow
def test_several_emotions_give_a_take_each_and_one_asked_twice_is_refused(emodiff_run, talk, tmp_path, capsys):
    import json

    out = tmp_path / "takes"
    assert generate(["blendshapes", "--checkpoint", str(emodiff_run), "--audio", str(talk["other"]), "--emotion",
                     "sad", "surprised", "--level", "2", "--steps", "2", "--out", str(out)]) == 0
    for emotion in ("sad", "surprised"):
        metadata = json.loads((out / f"talk_{emotion}_level_2.json").read_text())
        assert (metadata["emotion"], metadata["level"]) == (emotion, 2)
        assert len(read_live_link_csv(out / f"talk_{emotion}_level_2.csv").blendshapes) > 10

    twice = tmp_path / "twice"
    assert generate(["blendshapes", "--checkpoint", str(emodiff_run), "--audio", str(talk["other"]), "--emotion",
                     "sad", "happy", "sad", "--steps", "2", "--out", str(twice)]) == 2
    assert "asks for sad more than once" in capsys.readouterr().err and not twice.exists()
