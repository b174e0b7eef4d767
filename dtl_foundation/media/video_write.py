"""MP4 (H.264 + AAC) from frames and a speech file through imageio-ffmpeg's ffmpeg, written atomically."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from dtl_foundation.media.audio import AudioError, audio_duration
from dtl_foundation.atomic_files import atomic_path
from dtl_foundation.media.ffmpeg import FFMPEG_TIMEOUT_S, ffmpeg_cause, ffmpeg_command, ffmpeg_exe



class VideoError(RuntimeError):
    """A video that could not be written or read; the message is "<path>: <problem>"."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


def _as_uint8_chunks(frames) -> Iterable[np.ndarray]:
    """(t, H, W, 3) uint8 arrays from a tensor/array of frames or an iterable of chunks or single frames."""
    if isinstance(frames, (torch.Tensor, np.ndarray)):
        frames = [frames]
    for chunk in frames:
        chunk = chunk.detach().cpu().numpy() if isinstance(chunk, torch.Tensor) else np.asarray(chunk)
        if chunk.ndim == 3:
            chunk = chunk[None]
        if chunk.ndim != 4 or chunk.shape[-1] != 3:
            raise ValueError(f"frames must be (T, H, W, 3) RGB, got a chunk of shape {chunk.shape}")
        if chunk.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {chunk.dtype}")
        yield np.ascontiguousarray(chunk)


def write_video(path: str | os.PathLike, frames, fps: float, audio: str | os.PathLike | None = None, *,
                crf: int = 20, preset: str = "veryfast", audio_bitrate: str = "96k",
                max_mismatch_s: float = 0.25) -> Path:
    """Encode RGB uint8 frames ((T, H, W, 3), or an iterable of chunks) to an MP4 at `fps`, with `audio` muxed.

    With audio, the video gets exactly round(audio seconds x fps) frames, so both streams end together
    within a frame: missing frames repeat the last one, extra frames are dropped; a difference above
    `max_mismatch_s` seconds (a wrong fps, the wrong audio) is an error. The file appears only when complete.
    """
    path = Path(path)
    if not fps > 0:
        raise VideoError(path, f"fps must be positive, got {fps}")
    wanted = None
    if audio is not None:
        try:
            wanted = max(1, int(round(audio_duration(audio) * fps)))
        except AudioError as e:
            raise VideoError(path, f"audio {e}") from e
    chunks = iter(_as_uint8_chunks(frames))
    first = next(chunks, None)
    if first is None or len(first) == 0:
        raise VideoError(path, "no frames to write")
    height, width = first.shape[1:3]
    command = ffmpeg_command("-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
                             "-framerate", f"{fps:g}", "-i", "pipe:0")
    if audio is not None:
        command += ["-i", f"file:{audio}", "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", audio_bitrate]
    if width % 2 or height % 2:  # yuv420p needs even sides
        command += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
    command += ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
                "-movflags", "+faststart", "-f", "mp4"]
    with atomic_path(path) as tmp, tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command + [f"file:{tmp}"], stdin=subprocess.PIPE, stderr=log)
        given, written, last = 0, 0, first[-1]
        try:
            for chunk in _chain(first, chunks):
                if chunk.shape[1:3] != (height, width):
                    raise VideoError(path, f"frame size changed from {width}x{height} to "
                                           f"{chunk.shape[2]}x{chunk.shape[1]}")
                given += len(chunk)
                if wanted is not None:
                    chunk = chunk[:max(wanted - written, 0)]  # frames beyond the audio are counted, not written
                if len(chunk):
                    process.stdin.write(chunk.tobytes())
                    written += len(chunk)
                    last = chunk[-1]
            if wanted is not None:
                if abs(given - wanted) / fps > max_mismatch_s:
                    raise VideoError(path, f"{given} frames at {fps:g} fps last {given / fps:.2f} s but the audio "
                                           f"{audio} lasts {wanted / fps:.2f} s (more than {max_mismatch_s} s apart)")
                for _ in range(wanted - written):
                    process.stdin.write(last.tobytes())
            process.stdin.close()
            code = process.wait(timeout=FFMPEG_TIMEOUT_S)
        except BrokenPipeError:
            code = process.wait(timeout=FFMPEG_TIMEOUT_S)
        except BaseException:
            process.kill()
            process.wait()
            raise
        if code != 0:
            log.seek(0)
            raise VideoError(path, f"ffmpeg failed (exit {code}): {ffmpeg_cause(log.read()) or 'no message'}")
    return path


def _chain(first: np.ndarray, rest) -> Iterable[np.ndarray]:
    yield first
    yield from rest


@dataclass(frozen=True)
class VideoProbe:
    """What ffmpeg reports about a media file's container and first video and audio streams."""

    duration: float
    video_codec: str | None
    width: int
    height: int
    fps: float
    audio_codec: str | None
    sample_rate: int


def probe_video(path: str | os.PathLike) -> VideoProbe:
    """Read a file's duration and streams from `ffmpeg -i` (no ffprobe needed); VideoError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(path, "no such file")
    done = subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", f"file:{path}"], capture_output=True,
                          timeout=60, check=False)
    text = done.stderr.decode(errors="replace")
    duration = re.search(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)", text)
    if duration is None:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        raise VideoError(path, f"not a readable media file ({lines[-1].strip() if lines else 'no output'})")
    hours, minutes, seconds = duration.groups()
    video_line = next((line for line in text.splitlines() if re.search(r"Stream #.*: Video: ", line)), "")
    audio_line = next((line for line in text.splitlines() if re.search(r"Stream #.*: Audio: ", line)), "")
    video = re.search(r": Video: (\w+).*?, (\d+)x(\d+)", video_line)
    rate = re.search(r", ([\d.]+) fps", video_line)
    audio = re.search(r": Audio: (\w+)", audio_line)
    sample_rate = re.search(r", (\d+) Hz", audio_line)
    return VideoProbe(duration=int(hours) * 3600 + int(minutes) * 60 + float(seconds),
                      video_codec=video.group(1) if video else None,
                      width=int(video.group(2)) if video else 0, height=int(video.group(3)) if video else 0,
                      fps=float(rate.group(1)) if rate else 0.0, audio_codec=audio.group(1) if audio else None,
                      sample_rate=int(sample_rate.group(1)) if sample_rate else 0)


def check_video(path: str | os.PathLike, audio: str | os.PathLike, fps: float) -> str | None:
    """None when `path` is an H.264 + AAC MP4 as long as `audio` within one frame; else what is wrong."""
    try:
        probe = probe_video(path)
        seconds = audio_duration(audio)
    except (VideoError, AudioError) as e:
        return str(e)
    if probe.video_codec != "h264":
        return f"{path}: video stream is {probe.video_codec}, not h264"
    if probe.audio_codec != "aac":
        return f"{path}: audio stream is {probe.audio_codec}, not aac"
    if abs(probe.fps - fps) > 1e-3:
        return f"{path}: {probe.fps:g} fps, expected {fps:g}"
    if abs(probe.duration - seconds) > 1.0 / fps:
        return f"{path}: lasts {probe.duration:.3f} s but its audio {seconds:.3f} s"
    return None
