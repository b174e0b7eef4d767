"""SyncNet's audio features: python_speech_features.mfcc with its defaults, in numpy and in batched torch.

SyncNet (joonson/syncnet_python) reads 16 kHz mono WAV with scipy (int16 samples, not scaled to [-1, 1]) and calls
python_speech_features.mfcc(audio, 16000): pre-emphasis 0.97, 25 ms frames every 10 ms with no window function, the last
frame zero-padded, |rfft(512)|² / 512, 26 triangular mel filters on floor(513 * mel2hz(m) / sr) bins, log, orthonormal
DCT-II, 13 coefficients, sinusoidal lifter 22, then c0 replaced by the log frame energy (sum of the power spectrum).
Integer input is used as is; float input is taken as full scale [-1, 1] and multiplied by 32768 to reach the int16 scale
SyncNet was trained on (exact for audio decoded from int16 PCM).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.fft import dct

NUM_CEPSTRA = 13
NUM_FILTERS = 26
NFFT = 512
PREEMPHASIS = 0.97
CEPSTRAL_LIFTER = 22
WINDOW_SECONDS = 0.025
HOP_SECONDS = 0.01
INT16_SCALE = 32768.0
# SyncNet's window: 5 video frames at 25 fps face 20 MFCC columns (4 per frame); offsets are searched to +-15 frames
WINDOW_FRAMES = 5
MFCC_PER_FRAME = 4
MFCC_WINDOW = WINDOW_FRAMES * MFCC_PER_FRAME
MAX_OFFSET = 15
_EPS = np.finfo(float).eps  # python_speech_features' floor for zero energies before the log


def int16_scale(wave: np.ndarray) -> np.ndarray:
    """float64 samples on the int16 scale that SyncNet's MFCC expects."""
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ValueError(f"expected mono samples (N,), got shape {wave.shape}")
    if np.issubdtype(wave.dtype, np.integer):
        return wave.astype(np.float64)
    return wave.astype(np.float64) * INT16_SCALE


def frame_geometry(sample_rate: int) -> tuple[int, int]:
    """(frame length, hop) in samples, rounded half up as python_speech_features does."""
    return math.floor(WINDOW_SECONDS * sample_rate + 0.5), math.floor(HOP_SECONDS * sample_rate + 0.5)


def num_frames(num_samples: int, sample_rate: int = 16000) -> int:
    frame_len, hop = frame_geometry(sample_rate)
    return 1 if num_samples <= frame_len else 1 + math.ceil((num_samples - frame_len) / hop)


def mel_filterbank(sample_rate: int = 16000) -> np.ndarray:
    """(26, 257) triangular filters on python_speech_features' integer FFT-bin edges."""
    high_mel = 2595 * np.log10(1 + (sample_rate / 2) / 700.0)
    mel_points = np.linspace(0.0, high_mel, NUM_FILTERS + 2)
    edges = np.floor((NFFT + 1) * (700 * (10 ** (mel_points / 2595.0) - 1)) / sample_rate)
    bins = np.arange(NFFT // 2 + 1)[None, :]
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    # Each half-triangle is empty when its two edges coincide, hence the errstate and the masks.
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((bins >= left) & (bins < centre), (bins - left) / (centre - left), 0.0)
        falling = np.where((bins >= centre) & (bins < right), (right - bins) / (right - centre), 0.0)
    return rising + falling


def cepstral_lifter() -> np.ndarray:
    return 1 + (CEPSTRAL_LIFTER / 2.0) * np.sin(np.pi * np.arange(NUM_CEPSTRA) / CEPSTRAL_LIFTER)


def syncnet_mfcc(wave: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """(13, frames) float64 MFCC of one mono waveform, equal to python_speech_features.mfcc(wave, sample_rate).T."""
    signal = int16_scale(wave)
    if signal.size == 0:
        raise ValueError("empty waveform")
    emphasised = np.append(signal[0], signal[1:] - PREEMPHASIS * signal[:-1])
    frame_len, hop = frame_geometry(sample_rate)
    count = num_frames(len(emphasised), sample_rate)
    padded = np.concatenate([emphasised, np.zeros((count - 1) * hop + frame_len - len(emphasised))])
    frames = padded[np.arange(frame_len)[None, :] + hop * np.arange(count)[:, None]]
    power = np.square(np.abs(np.fft.rfft(frames, NFFT))) / NFFT
    energy = power.sum(1)
    energy = np.where(energy == 0, _EPS, energy)
    filtered = power @ mel_filterbank(sample_rate).T
    filtered = np.where(filtered == 0, _EPS, filtered)
    cepstra = dct(np.log(filtered), type=2, axis=1, norm="ortho")[:, :NUM_CEPSTRA] * cepstral_lifter()
    cepstra[:, 0] = np.log(energy)
    return cepstra.T


def syncnet_mfcc_torch(waves: torch.Tensor, sample_rate: int = 16000) -> torch.Tensor:
    """Batched (B, N) or (N,) waveforms -> (B, 13, frames) or (13, frames) float64, on the waves' device.

    Same computation as syncnet_mfcc; integer tensors are used as is, float ones are scaled by 32768.
    All waves in a batch share N (pad them yourself if the frame counts must follow each clip's own length).
    """
    single = waves.ndim == 1
    if single:
        waves = waves[None]
    if waves.ndim != 2 or waves.shape[1] == 0:
        raise ValueError(f"expected (B, N) or (N,) samples, got {tuple(waves.shape)}")
    scale = 1.0 if not waves.is_floating_point() else INT16_SCALE
    signal = waves.to(torch.float64) * scale
    emphasised = torch.cat([signal[:, :1], signal[:, 1:] - PREEMPHASIS * signal[:, :-1]], dim=1)
    frame_len, hop = frame_geometry(sample_rate)
    count = num_frames(emphasised.shape[1], sample_rate)
    padded = torch.nn.functional.pad(emphasised, (0, (count - 1) * hop + frame_len - emphasised.shape[1]))
    frames = padded.unfold(1, frame_len, hop)
    power = torch.fft.rfft(frames, NFFT).abs().square() / NFFT
    energy = power.sum(-1)
    energy = torch.where(energy == 0, torch.full_like(energy, _EPS), energy)
    filterbank = torch.from_numpy(mel_filterbank(sample_rate)).to(power.device)
    filtered = power @ filterbank.T
    filtered = torch.where(filtered == 0, torch.full_like(filtered, _EPS), filtered)
    dct_matrix = dct(np.eye(NUM_FILTERS), type=2, axis=1, norm="ortho")[:, :NUM_CEPSTRA]  # x @ dct_matrix == dct(x)
    dct_matrix = torch.from_numpy(dct_matrix).to(power.device)
    cepstra = (filtered.log() @ dct_matrix) * torch.from_numpy(cepstral_lifter()).to(power.device)
    cepstra[..., 0] = energy.log()
    cepstra = cepstra.transpose(-1, -2)
    return cepstra[0] if single else cepstra
