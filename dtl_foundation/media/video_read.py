"""Read a video as SyncNet sees it: RGB frames re-timed to 25 fps and int16 mono audio at 16 kHz (imageio-ffmpeg)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from dtl_foundation.file_problem import FileProblem
from dtl_foundation.media.ffmpeg import FFMPEG_TIMEOUT_S, FFmpegFailed, FFmpegTimeout, ffmpeg_cause, run_ffmpeg

VIDEO_FPS = 25
AUDIO_SAMPLE_RATE = 16000


class VideoReadError(FileProblem):
    """A video file that cannot be used; the message is "<path>: <problem>"."""


@dataclass(frozen=True)
class VideoClip:
    """A decoded video: frames (T, H, W, 3) uint8 RGB at `fps`, audio (N,) int16 mono at `sample_rate`."""

    path: Path
    frames: np.ndarray
    audio: np.ndarray
    fps: int
    sample_rate: int

    @property
    def duration_mismatch_s(self) -> float:
        """Audio length minus video length in seconds (SyncNet scores the shorter of the two)."""
        return len(self.audio) / self.sample_rate - len(self.frames) / self.fps


def read_video(path: str | os.PathLike, fps: int = VIDEO_FPS, sample_rate: int = AUDIO_SAMPLE_RATE) -> VideoClip:
    """Frames and audio of one video file; the audio is read first so that a silent-track file fails fast."""
    path = _existing_file(path)
    audio = read_audio_track(path, sample_rate)
    frames = read_frames(path, fps)
    return VideoClip(path=path, frames=frames, audio=audio, fps=fps, sample_rate=sample_rate)


def read_frames(path: str | os.PathLike, fps: int = VIDEO_FPS) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames re-timed to `fps` by ffmpeg's fps filter (nearest frame, as `-r` does)."""
    path = _existing_file(path)
    try:
        reader = imageio_ffmpeg.read_frames(f"file:{path}", pix_fmt="rgb24", output_params=["-vf", f"fps={fps}"])
        meta = next(reader)
    except (OSError, RuntimeError) as error:
        if "does not contain any stream" in str(error):
            raise VideoReadError(path, "no video stream") from None
        raise VideoReadError(path, f"unreadable video ({_cause(error)})") from None
    width, height = meta["size"]
    try:
        frames = [np.frombuffer(frame, dtype=np.uint8).reshape(height, width, 3) for frame in reader]
    except (OSError, RuntimeError) as error:
        raise VideoReadError(path, f"video decoding failed ({_cause(error)})") from None
    finally:
        reader.close()
    if not frames:
        raise VideoReadError(path, "the video stream holds no frames")
    return np.stack(frames)


def read_audio_track(path: str | os.PathLike, sample_rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """(N,) int16 mono samples of the first audio stream at `sample_rate`, as SyncNet's `ffmpeg -ac 1 -ar` gives."""
    path = _existing_file(path)
    try:
        out = run_ffmpeg("-i", f"file:{path}",  # "file:" so that a ':' in the name is never read as a protocol
                         "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(sample_rate), "-c:a", "pcm_s16le",
                         "-f", "s16le", "pipe:1")
    except FFmpegTimeout:
        raise VideoReadError(path, f"ffmpeg did not finish decoding the audio in {FFMPEG_TIMEOUT_S} s") from None
    except FFmpegFailed as e:
        if e.no_stream:
            raise VideoReadError(path, "no audio stream (SyncNet needs the speech track)") from None
        raise VideoReadError(path, f"unreadable video ({e.cause})") from None
    audio = np.frombuffer(out, dtype="<i2").astype(np.int16)
    if audio.size == 0:
        raise VideoReadError(path, "the audio stream holds no samples")
    return audio


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise VideoReadError(path, "no such file")
    if not path.is_file():
        raise VideoReadError(path, "not a regular file")
    return path


def _cause(error: Exception) -> str:
    """imageio-ffmpeg's reader error carries ffmpeg's stderr in its message."""
    return ffmpeg_cause(str(error)) or "ffmpeg gave no reason"
