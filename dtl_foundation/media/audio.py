"""Decode any speech file (wav/flac via soundfile, m4a/mp3/others via imageio-ffmpeg's ffmpeg) to float32 mono."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile
import soxr

from dtl_foundation.file_problem import FileProblem
from dtl_foundation.media.ffmpeg import FFMPEG_TIMEOUT_S, FFmpegFailed, FFmpegTimeout, run_ffmpeg

__all__ = ["AudioError", "load_audio", "audio_duration", "check_not_silent", "SOUNDFILE_SUFFIXES",
           "DEFAULT_SAMPLE_RATE"]

DEFAULT_SAMPLE_RATE = 16000
SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac"})  # everything else (m4a, mp3, ...) goes through ffmpeg


class AudioError(FileProblem):
    """An audio file that cannot be used; the message is "<path>: <problem>"."""


def load_audio(path: str | os.PathLike, sample_rate: int = DEFAULT_SAMPLE_RATE) -> np.ndarray:
    """The file's samples as float32 mono in [-1, 1] at `sample_rate` (channels averaged, soxr resampling)."""
    path = _existing_file(path)
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            wave = _read_soundfile(path, sample_rate)
        except (soundfile.LibsndfileError, RuntimeError) as sf_error:
            try:  # a wav/flac variant libsndfile does not know may still decode through ffmpeg
                wave = _read_ffmpeg(path, sample_rate)
            except AudioError as ff_error:
                raise AudioError(path, f"unreadable audio (soundfile: {getattr(sf_error, 'error_string', sf_error)}; "
                                       f"ffmpeg: {ff_error.problem})") from sf_error
    else:
        try:
            wave = _read_ffmpeg(path, sample_rate)
        except AudioError as ff_error:
            raise AudioError(path, f"unreadable audio (ffmpeg: {ff_error.problem})") from None
    if wave.size == 0:
        raise AudioError(path, "empty audio (0 samples)")
    if not np.isfinite(wave).all():
        raise AudioError(path, "audio holds NaN or infinite samples")
    return np.clip(wave, -1.0, 1.0, out=wave)


def audio_duration(path: str | os.PathLike) -> float:
    """Length in seconds: from the header for wav/flac, by decoding (one ffmpeg run) for anything else."""
    path = _existing_file(path)
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            info = soundfile.info(str(path))
        except (soundfile.LibsndfileError, RuntimeError):
            pass  # let load_audio try ffmpeg and word the error
        else:
            if info.frames <= 0:
                raise AudioError(path, "empty audio (0 samples)")
            return info.frames / info.samplerate
    return len(load_audio(path, DEFAULT_SAMPLE_RATE)) / DEFAULT_SAMPLE_RATE


def check_not_silent(wave: np.ndarray, path: str | os.PathLike, threshold_db: float = -60.0) -> float:
    """The peak level in dBFS; raises AudioError "silent audio" when it is below `threshold_db`."""
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    peak_db = 20.0 * np.log10(peak) if peak > 0 else float("-inf")
    if peak_db < threshold_db:
        raise AudioError(path, f"silent audio (peak {peak_db:.1f} dBFS, threshold {threshold_db:g} dBFS)")
    return peak_db


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "no such file")
    if not path.is_file():
        raise AudioError(path, "not a regular file")
    return path


def _read_soundfile(path: Path, sample_rate: int) -> np.ndarray:
    data, native_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    wave = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if native_rate != sample_rate and wave.size:
        wave = soxr.resample(wave, native_rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(wave, dtype=np.float32)


def _read_ffmpeg(path: Path, sample_rate: int) -> np.ndarray:
    """Decode the first audio stream to f32le mono at `sample_rate` on stdout (ffmpeg's soxr resampler)."""
    try:
        out = run_ffmpeg("-i", f"file:{path}",  # "file:" so a ':' in the name is never read as a protocol
                         "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(sample_rate), "-af", "aresample=resampler=soxr",
                         "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1")
    except FFmpegTimeout:
        raise AudioError(path, f"ffmpeg did not finish decoding in {FFMPEG_TIMEOUT_S} s") from None
    except FFmpegFailed as e:
        raise AudioError(path, "no audio stream" if e.no_stream else e.cause) from None
    return np.frombuffer(out, dtype="<f4").astype(np.float32)
