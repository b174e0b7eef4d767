"""The one way the project runs ffmpeg: imageio-ffmpeg's binary, errors only on stderr, a time limit, and the cause
of a failure in ffmpeg's own words."""

from __future__ import annotations

import re
import subprocess

import imageio_ffmpeg

FFMPEG_TIMEOUT_S = 600
_BANNER = ("===", "ffmpeg version", "built with", "configuration:", "lib")


class FFmpegFailed(Exception):
    """ffmpeg exited with an error: `cause` is its last meaningful line, `no_stream` that a -map matched nothing."""

    def __init__(self, cause: str, no_stream: bool = False) -> None:
        super().__init__(cause)
        self.cause = cause
        self.no_stream = no_stream


class FFmpegTimeout(FFmpegFailed):
    """ffmpeg did not finish within the time limit (it was killed)."""


def ffmpeg_exe() -> str:
    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_command(*args: str) -> list[str]:
    """ffmpeg with `args`, reading no stdin, printing only errors."""
    return [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", *args]


def run_ffmpeg(*args: str, timeout: float = FFMPEG_TIMEOUT_S) -> bytes:
    """Run ffmpeg to completion; its stdout (FFmpegFailed with the cause, FFmpegTimeout after `timeout` s)."""
    try:
        done = subprocess.run(ffmpeg_command(*args), capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise FFmpegTimeout(f"ffmpeg did not finish in {timeout:g} s") from None
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace")
        raise FFmpegFailed(ffmpeg_cause(stderr) or f"exit status {done.returncode}",
                           no_stream="matches no streams" in stderr)
    return done.stdout


def ffmpeg_cause(stderr: str | bytes) -> str:
    """ffmpeg's last meaningful error line, without its "[component @ 0x...]" prefix ("" when there is none)."""
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    lines = [re.sub(r"^\[[^\]]*\]\s*", "", line).strip() for line in stderr.splitlines()]
    lines = [line for line in lines if line and not line.startswith(_BANNER)]
    return lines[-1] if lines else ""
