"""Blendshape-space metrics against direct numpy definitions, on sequences that exercise them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dtl_foundation.arkit import INDEX, indices
from datamodules.features import FeatureConfig, compute_features, frame_loudness_db
from metrics.blendshape import AudioMouthSync, SampleDiversity, UpperFaceDynamicsDeviation, lagged_correlations

JAW = INDEX["jawOpen"]


def loud_and_mouth(lag: int, frames: int = 120, batch: int = 6, seed: int = 0):
    """Random smooth loudness (dB) and a jawOpen that follows it `lag` frames later, with padding."""
    rng = np.random.default_rng(seed)
    raw = rng.standard_normal((batch, frames + 20))
    smooth = np.stack([np.convolve(r, np.ones(5) / 5, mode="same") for r in raw])
    loud = 20 * smooth[:, 10:10 + frames]
    jaw = np.clip(0.3 + 0.05 * smooth[:, 10 - lag:10 - lag + frames], 0, 1)
    blend = np.zeros((batch, frames, 52))
    blend[..., JAW] = jaw
    mask = np.ones((batch, frames), bool)
    mask[0, 90:] = False  # a padded sequence
    return torch.tensor(blend), torch.tensor(loud), torch.tensor(mask)


def numpy_lagged_r(x: np.ndarray, y: np.ndarray, m: np.ndarray, lag: int) -> float:
    t = len(x)
    idx = [i for i in range(t) if 0 <= i - lag < t and m[i] and m[i - lag]]
    return float(np.corrcoef(x[idx], y[[i - lag for i in idx]])[0, 1])


@pytest.mark.parametrize("lag", [-3, 0, 2, 5])
def test_lagged_correlations_match_numpy_corrcoef(lag):
    blend, loud, mask = loud_and_mouth(lag)
    r, counts = lagged_correlations(blend[..., JAW], loud, mask, max_lag=5)
    assert counts.all()
    for b in range(blend.shape[0]):
        for k, candidate in enumerate(range(-5, 6)):
            expected = numpy_lagged_r(blend[b, :, JAW].numpy(), loud[b].numpy(), mask[b].numpy(), candidate)
            assert r[b, k].item() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("lag", [-4, 0, 3])
def test_sync_finds_the_lag_and_a_still_mouth_scores_zero(lag):
    blend, loud, mask = loud_and_mouth(lag)
    metric = AudioMouthSync(max_lag=5)
    metric.update(blend, loud, mask)
    result = metric.compute()
    assert result["lag"].item() == lag and result["sync"].item() > 0.99

    still = AudioMouthSync()
    still.update(torch.full_like(blend, 0.2), loud, mask)
    assert still.compute()["sync"].item() == 0.0
    noise = AudioMouthSync()
    noise.update(torch.rand_like(blend, generator=torch.Generator().manual_seed(0)), loud, mask)
    assert abs(noise.compute()["sync"].item()) < 0.3


def test_sync_streams_and_merges_like_one_pass():
    blend, loud, mask = loud_and_mouth(2, batch=8)
    whole = AudioMouthSync()
    whole.update(blend, loud, mask)
    a, b = AudioMouthSync(), AudioMouthSync()
    a.update(blend[:3], loud[:3], mask[:3])
    b.update(blend[3:], loud[3:], mask[3:])
    a.merge_state(b)
    torch.testing.assert_close(a.curve(), whole.curve())


def test_sync_ignores_sequences_without_audio_level_changes():
    blend, loud, mask = loud_and_mouth(0, batch=2)
    metric = AudioMouthSync()
    metric.update(blend, torch.zeros_like(loud), mask)  # no loudness given (zeros): nothing to correlate
    assert metric.sequences.sum() == 0


def test_loudness_tracks_the_waveform_level():
    cfg = FeatureConfig()
    t = np.arange(16000 * 2) / 16000
    envelope = np.where((t % 0.5) < 0.25, 1.0, 0.05)
    wave = (0.3 * envelope * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    loud = frame_loudness_db(compute_features(wave, 25.0, cfg), cfg)
    assert loud.shape == (50,)
    frame_env = envelope[(np.arange(50) * 640 + 320)]
    assert loud[frame_env == 1.0].mean() - loud[frame_env < 1.0].mean() > 20  # 0.05 amplitude = -26 dB
    full = FeatureConfig(kind="mfcc", n_mfcc=cfg.n_mels)  # an invertible DCT: the same loudness from MFCC
    np.testing.assert_allclose(frame_loudness_db(compute_features(wave, 25.0, full), full), loud, atol=1e-2)


def test_upper_face_dynamics_deviation_matches_its_definition():
    rng = np.random.default_rng(1)
    target = rng.random((4, 50, 52))
    preds = target.copy()
    upper = indices("upper_face")
    preds[..., upper] = 0.5 + 0.3 * (target[..., upper] - 0.5)  # damped upper face
    mask = np.ones((4, 50), bool)
    mask[1, 30:] = False
    metric = UpperFaceDynamicsDeviation()
    metric.update(torch.tensor(preds), torch.tensor(target), torch.tensor(mask))
    expected = np.mean([np.abs(preds[b, mask[b]][:, upper].std(0) - target[b, mask[b]][:, upper].std(0)).mean()
                        for b in range(4)])
    assert metric.compute().item() == pytest.approx(expected, rel=1e-6)
    assert expected > 0.1
    same = UpperFaceDynamicsDeviation()
    same.update(torch.tensor(target), torch.tensor(target), torch.tensor(mask))
    assert same.compute().item() == 0.0


def test_sample_diversity_is_the_mean_pairwise_distance():
    rng = np.random.default_rng(2)
    samples = rng.random((3, 2, 10, 52))
    mask = np.ones((2, 10), bool)
    mask[1, 6:] = False
    metric = SampleDiversity()
    metric.update(torch.tensor(samples), torch.tensor(mask))
    pairs = [np.abs(samples[i] - samples[j])[mask].mean(-1) for i in range(3) for j in range(i + 1, 3)]
    assert metric.compute().item() == pytest.approx(np.concatenate(pairs).mean(), rel=1e-6)
    deterministic = SampleDiversity()
    deterministic.update(torch.tensor(np.stack([samples[0]] * 3)), torch.tensor(mask))
    assert deterministic.compute().item() == 0.0
    with pytest.raises(ValueError, match="K >= 2"):
        SampleDiversity().update(torch.tensor(samples[:1]), torch.tensor(mask))
