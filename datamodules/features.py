"""Log-mel / MFCC audio features at a 10 ms hop, resampled frame-for-frame onto the blendshape frame rate."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import librosa
import numpy as np
import scipy.fft

__all__ = ["FEATURE_KINDS", "FEATURE_VERSION", "LOG_MEL_FLOOR", "FeatureConfig", "FeatureStats", "compute_features",
           "feature_frames", "fit_frames", "natural_num_frames", "sub_frame_times"]

# Bump when the numbers compute_features returns for the same settings change: it moves every cache key.
FEATURE_VERSION = 1
FEATURE_KINDS = ("logmel", "mfcc", "logmel+mfcc")
LOG_MEL_FLOOR = 1e-10  # power floor before the log: digital silence reads -100 dB, not -inf


@dataclass(frozen=True)
class FeatureConfig:
    """What compute_features computes; `key()` names it in the cache, `dim` is channels per blendshape frame."""

    kind: str = "logmel"
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400  # 25 ms at 16 kHz
    hop_length: int = 160  # 10 ms at 16 kHz
    n_mels: int = 80
    n_mfcc: int = 13
    fmin: float = 55.0
    fmax: float = 7600.0
    sub_frames: int = 4  # feature samples stacked per blendshape frame

    def __post_init__(self) -> None:
        # Normalise types so FeatureConfig(fmin=55) and FeatureConfig(fmin=55.0) share one cache key.
        for field in dataclasses.fields(self):
            caster = float if field.type == "float" else int if field.type == "int" else str
            object.__setattr__(self, field.name, caster(getattr(self, field.name)))
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"feature kind {self.kind!r} is not one of {FEATURE_KINDS}")
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"win_length {self.win_length} must be in (0, n_fft={self.n_fft}]")
        if self.hop_length <= 0 or self.sub_frames <= 0 or self.n_mels <= 0:
            raise ValueError("hop_length, sub_frames and n_mels must be positive")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={self.fmin} fmax={self.fmax}")
        if "mfcc" in self.kind and not 0 < self.n_mfcc <= self.n_mels:
            raise ValueError(f"n_mfcc {self.n_mfcc} must be in (0, n_mels={self.n_mels}]")

    @property
    def channels(self) -> int:
        """Channels of one 10 ms feature frame (one sub-frame)."""
        return {"logmel": self.n_mels, "mfcc": self.n_mfcc, "logmel+mfcc": self.n_mels + self.n_mfcc}[self.kind]

    @property
    def dim(self) -> int:
        """Channels per blendshape frame: `sub_frames` sub-frames of `channels` each, sub-frame-major."""
        return self.channels * self.sub_frames

    @property
    def hop_seconds(self) -> float:
        return self.hop_length / self.sample_rate

    def key(self) -> str:
        """16 hex digits naming these settings and FEATURE_VERSION; stable across runs and machines."""
        settings = dict(dataclasses.asdict(self), feature_version=FEATURE_VERSION)
        text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
        return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def feature_frames(wave: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """(channels, F) features at the 10 ms hop; frame j is centred on time j * hop / sr (librosa center=True).

    log-mel = 10*log10(max(mel power, LOG_MEL_FLOOR)) with no top_db clipping (that would depend on the
    utterance's loudest frame); MFCC = orthonormal DCT-II of that same log-mel (librosa.feature.mfcc).
    """
    power = librosa.feature.melspectrogram(
        y=np.asarray(wave, dtype=np.float32), sr=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
        win_length=cfg.win_length, window="hann", center=True, power=2.0, n_mels=cfg.n_mels, fmin=cfg.fmin,
        fmax=cfg.fmax)
    log_mel = librosa.power_to_db(power, ref=1.0, amin=LOG_MEL_FLOOR, top_db=None)
    parts = []
    if "logmel" in cfg.kind:
        parts.append(log_mel)
    if "mfcc" in cfg.kind:
        parts.append(librosa.feature.mfcc(S=log_mel, n_mfcc=cfg.n_mfcc, dct_type=2, norm="ortho", lifter=0))
    return np.concatenate(parts, axis=0).astype(np.float32, copy=False)


def natural_num_frames(num_samples: int, sample_rate: int, fps: float) -> int:
    """round(duration * fps), at least 1 for non-empty audio."""
    return max(1, round(num_samples / sample_rate * fps)) if num_samples else 0


def sub_frame_times(num_frames: int, fps: float, sub_frames: int) -> np.ndarray:
    """(num_frames, sub_frames) seconds: blendshape frame t covers [t/fps, (t+1)/fps), cut into `sub_frames`
    equal parts, and sub-frame k sits at the centre of part k: (t + (k + 0.5) / sub_frames) / fps."""
    offsets = (np.arange(sub_frames) + 0.5) / sub_frames
    return (np.arange(num_frames)[:, None] + offsets[None, :]) / fps


def compute_features(wave: np.ndarray, fps: float, cfg: FeatureConfig, num_frames: int | None = None) -> np.ndarray:
    """(num_frames, cfg.dim) float32 features aligned to blendshape frames at `fps`.

    Row t stacks `cfg.sub_frames` feature vectors sampled at `sub_frame_times` by linear interpolation between
    the two nearest 10 ms frames (row.reshape(sub_frames, channels) recovers them). `num_frames` defaults to
    round(duration * fps); a larger value repeats the last row, a smaller one truncates, so the result always
    equals fit_frames(compute_features(wave, fps, cfg), num_frames). No normalisation is applied.
    """
    wave = np.asarray(wave)
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"expected a non-empty 1-D waveform, got shape {wave.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    natural = natural_num_frames(wave.size, cfg.sample_rate, fps)
    rows = natural if num_frames is None else min(natural, num_frames)
    if rows <= 0:
        return fit_frames(np.zeros((0, cfg.dim), np.float32), num_frames or 0)

    frames = feature_frames(wave, cfg)  # (C, F)
    last = frames.shape[1] - 1
    position = sub_frame_times(rows, fps, cfg.sub_frames).ravel() / cfg.hop_seconds  # in 10 ms frame units
    position = np.clip(position, 0.0, last)
    left = np.minimum(np.floor(position).astype(np.int64), max(last - 1, 0))
    right = np.minimum(left + 1, last)
    weight = (position - left).astype(np.float32)
    sampled = frames[:, left] * (1.0 - weight) + frames[:, right] * weight  # (C, rows * sub_frames)
    features = np.ascontiguousarray(sampled.T.reshape(rows, cfg.dim), dtype=np.float32)
    return features if num_frames is None else fit_frames(features, num_frames)


def frame_loudness_db(features: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """(T,) loudness per blendshape frame from raw features: 10*log10 of the mean mel power over bands and sub-frames.

    MFCC-only features give the log-mel back through the orthonormal inverse DCT (exact when n_mfcc == n_mels,
    a spectral envelope otherwise).
    """
    rows = np.asarray(features, dtype=np.float64).reshape(len(features), cfg.sub_frames, cfg.channels)
    if "logmel" in cfg.kind:
        log_mel = rows[:, :, : cfg.n_mels]
    else:
        log_mel = scipy.fft.idct(rows[:, :, : cfg.n_mfcc], type=2, n=cfg.n_mels, norm="ortho", axis=-1)
    power = np.power(10.0, log_mel / 10.0).mean(axis=(1, 2))
    return (10.0 * np.log10(np.maximum(power, LOG_MEL_FLOOR))).astype(np.float32)


def fit_frames(features: np.ndarray, num_frames: int | None) -> np.ndarray:
    """Truncate to `num_frames` rows or pad by repeating the last row; None leaves the array as it is."""
    if num_frames is None or len(features) == num_frames:
        return features
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if len(features) >= num_frames:
        return features[:num_frames]
    if len(features) == 0:
        raise ValueError(f"cannot pad an empty feature array to {num_frames} frames")
    return np.concatenate([features, np.repeat(features[-1:], num_frames - len(features), axis=0)])


class FeatureStats:
    """Per-channel mean and std over the frames of many (T, C) arrays, one array at a time (float64, Chan's merge)."""

    def __init__(self) -> None:
        self.count = 0
        self._mean: np.ndarray | None = None
        self._m2: np.ndarray | None = None

    def update(self, features: np.ndarray) -> None:
        x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
        if len(x) == 0:
            return
        mean, m2 = x.mean(axis=0), ((x - x.mean(axis=0)) ** 2).sum(axis=0)
        if self._mean is None:
            self.count, self._mean, self._m2 = len(x), mean, m2
            return
        total = self.count + len(x)
        delta = mean - self._mean
        self._mean = self._mean + delta * (len(x) / total)
        self._m2 = self._m2 + m2 + delta ** 2 * (self.count * len(x) / total)
        self.count = total

    @property
    def mean(self) -> np.ndarray:
        if self._mean is None:
            raise ValueError("no frames seen yet")
        return self._mean.astype(np.float32)

    def std(self, floor: float = 1e-5) -> np.ndarray:
        """Population std, floored so that dividing by it is safe for constant channels."""
        if self._m2 is None:
            raise ValueError("no frames seen yet")
        return np.sqrt(self._m2 / self.count).clip(min=floor).astype(np.float32)
