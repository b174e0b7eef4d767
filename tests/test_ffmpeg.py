"""The one ffmpeg runner of dtl_foundation.media: its failures carry ffmpeg's cause, a missing stream, a time limit."""

import numpy as np
import pytest
import soundfile

from dtl_foundation.media.ffmpeg import FFmpegFailed, FFmpegTimeout, ffmpeg_cause, run_ffmpeg


def test_stdout_of_a_decode(tmp_path):
    wav = tmp_path / "tone.wav"
    soundfile.write(wav, (0.1 * np.sin(np.arange(1600) / 5)).astype(np.float32), 16000)
    out = run_ffmpeg("-i", f"file:{wav}", "-f", "s16le", "-ac", "1", "pipe:1")
    assert len(out) == 2 * 1600


def test_failures_name_the_cause_and_a_missing_stream(tmp_path):
    with pytest.raises(FFmpegFailed, match="No such file or directory") as missing:
        run_ffmpeg("-i", f"file:{tmp_path / 'absent.wav'}", "-f", "null", "-")
    assert not missing.value.no_stream
    wav = tmp_path / "tone.wav"
    soundfile.write(wav, np.zeros(1600, np.float32), 16000)
    with pytest.raises(FFmpegFailed) as no_video:
        run_ffmpeg("-i", f"file:{wav}", "-map", "0:v:0", "-f", "null", "-")
    assert no_video.value.no_stream


def test_a_run_past_its_time_limit_is_stopped():
    with pytest.raises(FFmpegTimeout, match="did not finish in 0.5 s"):
        run_ffmpeg("-re", "-f", "lavfi", "-i", "anullsrc", "-f", "null", "-", timeout=0.5)


def test_the_cause_is_the_last_line_without_its_component_prefix():
    stderr = "ffmpeg version 7\nlibavutil 59\n[mov,mp4 @ 0x55d0] moov atom not found\nin.mp4: Invalid data found\n"
    assert ffmpeg_cause(stderr.encode()) == "in.mp4: Invalid data found"
    assert ffmpeg_cause("[in#0 @ 0x1] Error opening input\n") == "Error opening input"
    assert ffmpeg_cause("") == ""
