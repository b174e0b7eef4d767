"""Attention-check videos: a method's video with its audio delayed by a number of frames (silence in front, cut
to the original length), the picture untouched."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg

from dtl_foundation.atomic_files import atomic_path
from dtl_foundation.media.video_write import VideoError, probe_video

FFMPEG_TIMEOUT_S = 300


def delay_audio(source: Path, target: Path, frames: int) -> Path:
    """Write `source` with its audio `frames` video frames late to `target` (H.264 stream copied, AAC re-encoded)."""
    probe = probe_video(source)
    if probe.audio_codec is None:
        raise VideoError(source, "no audio stream: an attention check needs the speech to shift")
    if not probe.fps > 0:
        raise VideoError(source, "no video frame rate in the file")
    delay_ms = 1000.0 * frames / probe.fps
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
               "-i", f"file:{source}", "-map", "0:v:0", "-map", "0:a:0", "-c:v", "copy",
               "-af", f"adelay={delay_ms:.3f}:all=1", "-c:a", "aac", "-t", f"{probe.duration:.3f}",
               "-movflags", "+faststart", "-f", "mp4"]
    with atomic_path(target) as tmp:
        done = subprocess.run(command + [f"file:{tmp}"], capture_output=True, timeout=FFMPEG_TIMEOUT_S, check=False)
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines()
            raise VideoError(source, f"ffmpeg could not delay the audio: {lines[-1] if lines else done.returncode}")
    return target
