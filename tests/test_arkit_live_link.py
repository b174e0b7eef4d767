"""The Live Link Face CSV against a real capture kept byte for byte (tests/data/live_link/README.md names it), the
reader by column name and both count-column spellings, and timecodes at film, PAL and NTSC rates."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from datamodules.tracks import load_track
from dtl_foundation import arkit
from dtl_foundation.arkit_live_link import (BLENDSHAPE_COUNT, FRAME_RATES, LLF_HEADER, POSE_NAMES, LiveLinkTrack,
                                            frames_to_timecode, read_live_link_csv, sampled_rate, timecode_rate,
                                            timecode_to_seconds, write_live_link_csv)

CAPTURE = Path(__file__).parent / "data" / "live_link" / "alex_rom_3_first_rows.csv"
REPO = Path(__file__).resolve().parents[1]


def test_written_header_equals_the_real_capture_byte_for_byte(tmp_path):
    path = tmp_path / "take.csv"
    write_live_link_csv(path, LiveLinkTrack(np.zeros((2, 52)), fps=30.0))
    written, real = path.read_bytes().split(b"\n")[0], CAPTURE.read_bytes().split(b"\n")[0]
    assert written == real
    assert len(LLF_HEADER) == 63 and LLF_HEADER[1] == "BlendShapeCount"


def test_the_real_capture_read_and_written_back_is_the_same_file(tmp_path):
    """Column order, count column (61), timecodes and the ten-decimal numbers: all as the app wrote them."""
    take = read_live_link_csv(CAPTURE, fps=60.0)
    assert take.blendshapes.shape == (75, 52) and take.timecodes[0] == "13:13:04:31.652"
    assert take.blendshapes[0, arkit.INDEX["jawRight"]] == pytest.approx(0.0185036063)  # its JawRight column
    assert take.pose[0, POSE_NAMES.index("HeadYaw")] == 0.0
    path = tmp_path / "again.csv"
    write_live_link_csv(path, take)
    assert path.read_bytes() == CAPTURE.read_bytes()


def test_generated_rows_have_the_app_row_format(tmp_path):
    path = tmp_path / "take.csv"
    rng = np.random.default_rng(0)
    write_live_link_csv(path, LiveLinkTrack(rng.random((3, 52)), fps=30.0, pose=rng.uniform(-0.3, 0.3, (3, 9))))
    row = re.compile(r"\d\d:\d\d:\d\d:\d\d\.\d{3},61(,-?\d\.\d{10}){61}")
    for line in path.read_text().splitlines()[1:] + CAPTURE.read_text().splitlines()[1:]:
        assert row.fullmatch(line), line
    assert BLENDSHAPE_COUNT == 61


def test_capture_timecodes_give_its_30_fps_sampling_against_a_60_fps_timecode():
    take = read_live_link_csv(CAPTURE, fps=60.0)
    seconds = [timecode_to_seconds(tc, 60.0) for tc in take.timecodes]
    np.testing.assert_allclose(np.diff(seconds), 1 / 30, atol=1e-4)
    assert sampled_rate(take.timecodes, 60.0) == 30.0  # rows a timecode second, whatever the timecode's rate
    track, fps = load_track(CAPTURE, csv_fps=60.0)  # how corpora and --style clips read it
    assert fps == 30.0 and track.shape == (75, 52)


@pytest.mark.parametrize("fps", FRAME_RATES)
def test_takes_written_at_a_rate_are_read_at_that_rate(tmp_path, fps):
    path = tmp_path / "take.csv"
    write_live_link_csv(path, LiveLinkTrack(np.zeros((int(fps * 3), 52)), fps=fps))
    assert load_track(path, csv_fps=fps)[1] == fps
    assert load_track(path, csv_fps=60.0)[1] == pytest.approx(fps, rel=0.005)  # told another rate: counted
    short = tmp_path / "short.csv"
    write_live_link_csv(short, LiveLinkTrack(np.zeros((int(fps * 1.5), 52)), fps=fps))
    assert load_track(short, csv_fps=60.0)[1] == 60.0  # no whole timecode second to count: as told


@pytest.mark.parametrize("spelling", ["BlendShapeCount", "BlendshapeCount"])
def test_reader_takes_both_count_spellings_and_any_column_order(tmp_path, spelling):
    rng = np.random.default_rng(2)
    values = rng.random((4, 52)).astype(np.float32)
    path = tmp_path / "take.csv"
    write_live_link_csv(path, LiveLinkTrack(values, fps=30.0))
    rows = [line.split(",") for line in path.read_text().splitlines()]
    rows[0][1] = spelling
    order = [1, 0] + list(2 + rng.permutation(len(rows[0]) - 2))
    path.write_text("\n".join(",".join(r[i] for i in order) for r in rows) + "\n")
    np.testing.assert_array_equal(read_live_link_csv(path, fps=30.0).blendshapes, values)


def test_unknown_count_spelling_is_a_named_error(tmp_path):
    path = tmp_path / "take.csv"
    write_live_link_csv(path, LiveLinkTrack(np.zeros((2, 52)), fps=30.0))
    path.write_text(path.read_text().replace("BlendShapeCount", "ShapeCount", 1))
    with pytest.raises(arkit.BlendshapeNameError, match=r"take.csv: unknown blendshape names \['shapeCount'\]"):
        read_live_link_csv(path)


@pytest.mark.parametrize("fps, frame, timecode", [
    (24.0, 23, "00:00:00:23.000"), (24.0, 24, "00:00:01:00.000"), (24.0, 24 * 3600, "01:00:00:00.000"),
    (23.976, 24, "00:00:01:00.000"), (25.0, 49, "00:00:01:24.000"),
    (29.97, 29, "00:00:00:29.000"), (29.97, 30, "00:00:01:00.000"), (29.97, 1800, "00:01:00:00.000"),
    (50.0, 75, "00:00:01:25.000"), (59.94, 61, "00:00:01:01.000"), (60.0, 45, "00:00:00:45.000"),
])
def test_timecodes_count_frames_at_the_nominal_rate(fps, frame, timecode):
    assert frames_to_timecode(frame, fps) == timecode
    assert timecode_to_seconds(timecode, fps) == pytest.approx(frame / fps, abs=1e-9)


@pytest.mark.parametrize("fps", FRAME_RATES)
def test_every_frame_gets_its_own_timecode_and_time(fps):
    frames = np.arange(int(fps * 70))  # past a minute
    codes = [frames_to_timecode(int(i), fps) for i in frames]
    assert len(set(codes)) == len(codes)
    assert max(int(c.split(":")[3][:2]) for c in codes) == timecode_rate(fps) - 1
    np.testing.assert_allclose([timecode_to_seconds(c, fps) for c in codes], frames / fps, atol=1e-9)


def test_rates_without_a_timecode_are_refused():
    with pytest.raises(ValueError, match="no timecode for 12.5 fps"):
        frames_to_timecode(3, 12.5)


def test_round_trip_with_pose_at_29_97(tmp_path):
    rng = np.random.default_rng(1)
    track = LiveLinkTrack(blendshapes=rng.random((90, 52)), fps=29.97,
                          pose=rng.uniform(-0.3, 0.3, (90, 9)).astype(np.float32))
    path = tmp_path / "take.csv"
    write_live_link_csv(path, track)
    back = read_live_link_csv(path, fps=29.97)
    np.testing.assert_allclose(back.blendshapes, track.blendshapes, rtol=0, atol=1e-10)  # ten decimals
    np.testing.assert_allclose(back.pose, track.pose, rtol=0, atol=1e-10)
    np.testing.assert_allclose([timecode_to_seconds(tc, 29.97) for tc in back.timecodes], np.arange(90) / 29.97)


def test_malformed_csv_names_the_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(",".join(LLF_HEADER) + "\n00:00:00:00.000,61,abc\n")
    with pytest.raises(arkit.BlendshapeNameError, match="bad.csv: malformed row"):
        read_live_link_csv(path)


def test_reading_without_a_rate_takes_the_captures_60_fps_timecode():
    # The capture's frame field reaches 31, so its timecode counts more than 30 frames a second: the app's 60.
    take = read_live_link_csv(CAPTURE)
    assert take.fps == 60.0
    assert timecode_to_seconds(take.timecodes[0], take.fps) == pytest.approx((13 * 60 + 13) * 60 + 4 + 31.652 / 60)


def test_the_cli_offers_the_rates_the_readme_lists():
    listed = re.search(r"`--fps` is ([\d., ]+) or ([\d.]+);", (REPO / "README.md").read_text().replace("\n   ", " "))
    assert listed, "README.md no longer lists the --fps rates"
    rates = [float(r) for r in listed.group(1).split(", ")] + [float(listed.group(2))]
    assert FRAME_RATES == tuple(rates)


def test_a_column_the_app_does_not_write_is_refused_not_dropped(tmp_path):
    path = tmp_path / "take.csv"
    write_live_link_csv(path, LiveLinkTrack(np.zeros((2, 52)), fps=30.0))
    rows = [line + ",0.5" for line in path.read_text().splitlines()]
    path.write_text("\n".join([rows[0][: -len("0.5")] + "AudioLevel"] + rows[1:]) + "\n")
    with pytest.raises(arkit.BlendshapeNameError, match=r"take.csv: unknown blendshape names \['audioLevel'\]"):
        read_live_link_csv(path)


def test_a_header_column_without_a_name_is_a_named_error(tmp_path):
    path = tmp_path / "take.csv"
    write_live_link_csv(path, LiveLinkTrack(np.zeros((2, 52)), fps=30.0))
    path.write_text("\n".join(line + ",0.5" if i else line + ", " for i, line in
                              enumerate(path.read_text().splitlines())) + "\n")
    with pytest.raises(arkit.BlendshapeNameError, match="take.csv: a header column has no name"):
        read_live_link_csv(path)


def test_a_take_without_pose_columns_reads_with_zero_pose(tmp_path):
    values = np.random.default_rng(3).random((3, 52)).astype(np.float32)
    path = tmp_path / "take.csv"
    write_live_link_csv(path, LiveLinkTrack(values, fps=30.0, pose=np.ones((3, 9))))
    path.write_text("\n".join(",".join(line.split(",")[:-len(POSE_NAMES)]) for line in
                              path.read_text().splitlines()) + "\n")
    take = read_live_link_csv(path, fps=30.0)
    np.testing.assert_array_equal(take.blendshapes, values)
    np.testing.assert_array_equal(take.pose, np.zeros((3, 9)))


def test_a_bad_timecode_is_named():
    for timecode in ("12:30", "aa:00:00:00.000", ""):
        with pytest.raises(ValueError, match=rf"bad timecode '{timecode}' \(expected HH:MM:SS:FF.mmm\)"):
            timecode_to_seconds(timecode, 30.0)


def test_non_finite_rates_are_refused_by_name():
    for fps in (float("nan"), float("inf"), -30.0, 0.0, 0.4):
        with pytest.raises(ValueError, match="no timecode for"):
            timecode_rate(fps)


def test_the_lowest_whole_rate_has_a_timecode():
    assert timecode_rate(1.0) == 1
    assert frames_to_timecode(61, 1.0) == "00:01:01:00.000"


def timecodes_at_60(first_frame: int, rows: int, step: int = 2, start: str = "10:00:00") -> list[str]:
    """`rows` timecodes two 60-fps frames apart (a 30 fps take) from frame `first_frame` of second `start`."""
    hh, mm, ss = (int(part) for part in start.split(":"))
    first = ((hh * 60 + mm) * 60 + ss) * 60 + first_frame
    return [frames_to_timecode((first + step * i) % (24 * 3600 * 60), 60.0) for i in range(rows)]


def test_sampled_rate_counts_from_a_first_row_on_the_last_frame_of_a_second():
    # Frame 58 of a second, one whole second, a few rows: the only two second boundaries are rows 1 and 31.
    timecodes = timecodes_at_60(58, 35)
    assert sampled_rate(timecodes, 60.0) == 30.0


def test_sampled_rate_counts_across_midnight():
    # Time-of-day timecodes (the capture's start at 13:13:04) wrap to 00:00:00 at midnight.
    timecodes = timecodes_at_60(0, 65, start="23:59:59")
    assert timecodes[30] == "00:00:00:00.000"
    assert sampled_rate(timecodes, 60.0) == 30.0


def test_sampled_rate_counts_a_take_faster_than_stated():
    assert sampled_rate(timecodes_at_60(0, 200, step=1), 30.0) == 60.0


def test_timecodes_that_are_not_hh_mm_ss_ff_keep_the_stated_rate():
    assert sampled_rate([str(i) for i in range(200)], 30.0) == 30.0
    assert sampled_rate([f"00:{i // 60:02d}" for i in range(200)], 30.0) == 30.0
