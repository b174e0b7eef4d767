"""SyncNet's LSE-C / LSE-D arithmetic against syncnet_python's definitions, fast enough to run per mutant.

The reference (SyncNetInstance.evaluate): dists = calc_pdist(lip, audio, vshift) (one row of 2 * vshift + 1 distances
per window, the audio zero-padded by vshift rows at both ends), mdist = their mean over windows, LSE-D = min(mdist),
LSE-C = median(mdist) - min(mdist), AV offset = vshift - argmin(mdist). The windows: min(frames, samples // 640) - 5.
The network itself is compared with the reference in tests/test_syncnet.py (25 s a run on a 2-core machine).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from syncnet_python.SyncNetInstance import calc_pdist

from metrics.syncnet import (LipSyncError, LipSyncScore, SyncNet, SyncNetScorer, lip_sync_score, num_sync_windows,
                             offset_distances)


def reference_scores(lip: torch.Tensor, audio: torch.Tensor, vshift: int) -> tuple[int, float, float, torch.Tensor]:
    """syncnet_python's evaluate() after its embeddings: (offset, LSE-C, LSE-D, mean distance per offset)."""
    mdist = torch.mean(torch.stack(calc_pdist(lip, audio, vshift=vshift), 1), 1)
    minval, minidx = torch.min(mdist, 0)
    return int(vshift - minidx), float(torch.median(mdist) - minval), float(minval), mdist


def embeddings(windows: int, lag: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, 1024) lip and audio embeddings where audio[v] is lip[v + lag] plus a little noise (the sound of a window
    `lag` windows ahead of its lips)."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(windows + abs(lag), 1024, generator=generator)
    lip = base[max(-lag, 0): max(-lag, 0) + windows]
    audio = base[max(lag, 0): max(lag, 0) + windows] + 0.1 * torch.randn(windows, 1024, generator=generator)
    return lip, audio


@pytest.fixture(scope="module")
def net() -> SyncNet:
    torch.manual_seed(0)
    return SyncNet().eval()


def video(frames: int, samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    crops = torch.randint(0, 256, (frames, 3, 224, 224), dtype=torch.uint8, generator=generator)
    return crops, (torch.randn(samples, generator=generator) * 3000).to(torch.int16)


# --- distances and scores --------------------------------------------------------------------------------

@pytest.mark.parametrize(("windows", "max_offset", "chunk"), [(40, 15, 16), (7, 15, 512), (1, 2, 512), (9, 3, 4)])
def test_offset_distances_equal_calc_pdist(windows, max_offset, chunk):
    lip, audio = embeddings(windows, lag=2)
    reference = torch.stack(calc_pdist(lip, audio, vshift=max_offset))
    ours = offset_distances(lip, audio, max_offset=max_offset, chunk=chunk)
    assert ours.shape == (windows, 2 * max_offset + 1)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-5)


def test_offset_distances_refuse_embeddings_of_other_shapes():
    lip, audio = embeddings(6, lag=0)
    for one, other in ((lip, audio[:5]), (lip[:5], audio), (lip, audio[:, :512]), (lip[None], audio[None]),
                       (lip[0], audio[0])):
        with pytest.raises(ValueError, match=r"expected lip and audio embeddings of one shape \(W, D\)"):
            offset_distances(one, other)


@pytest.mark.parametrize("lag", [-4, 0, 3])
def test_scores_equal_the_references_and_the_offset_is_the_lag(lag):
    lip, audio = embeddings(30, lag=lag, seed=lag + 10)
    score = lip_sync_score(offset_distances(lip, audio))
    offset, confidence, distance, mean_distances = reference_scores(lip, audio, vshift=15)
    assert score.offset == offset == lag
    assert score.lse_c == pytest.approx(confidence, abs=1e-4) and score.lse_c > 1.0
    assert score.lse_d == pytest.approx(distance, abs=1e-4)
    torch.testing.assert_close(score.mean_distances, mean_distances, rtol=1e-6, atol=1e-4)
    assert score.num_windows == 30
    assert isinstance(score.offset, int) and isinstance(score.lse_c, float) and isinstance(score.lse_d, float)


def test_scores_of_hand_made_distances():
    distances = torch.tensor([[5.0, 2.0, 4.0, 9.0, 7.0], [7.0, 4.0, 2.0, 9.0, 5.0]])  # means 6, 3, 3, 9, 6
    score = lip_sync_score(distances, max_offset=2)
    assert (score.lse_d, score.lse_c, score.offset, score.num_windows) == (3.0, 3.0, 1, 2)  # first of a tie
    torch.testing.assert_close(score.mean_distances, torch.tensor([6.0, 3.0, 3.0, 9.0, 6.0]))
    with pytest.raises(dataclasses.FrozenInstanceError):
        score.lse_c = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(("frames", "samples", "windows"),
                         [(30, 30 * 640, 25), (30, 20 * 640 + 639, 15), (10, 1000 * 640, 5), (5, 5 * 640, 0),
                          (6, 6 * 640 - 1, 0), (6, 6 * 640, 1)])
def test_window_count_is_the_references(frames, samples, windows):
    assert num_sync_windows(frames, samples) == windows
    assert type(num_sync_windows(frames, samples)) is int


# --- one video, many videos ------------------------------------------------------------------------------

@pytest.mark.parametrize(("frames", "samples", "windows"), [(12, 10 * 640 + 100, 5), (9, 20 * 640, 4)])
def test_a_videos_score_is_the_references_on_its_embeddings(net, frames, samples, windows):
    scorer = SyncNetScorer(net, max_offset=2, batch_size=4)
    crops, audio = video(frames, samples, seed=frames)
    score = scorer.score(crops, audio)
    offset, confidence, distance, mean_distances = reference_scores(
        scorer.lip_embeddings(crops, windows), scorer.audio_embeddings(audio, windows), vshift=2)
    assert score.num_windows == windows and score.mean_distances.shape == (5,)
    assert score.offset == offset and score.lse_c > 0
    assert score.lse_c == pytest.approx(confidence, abs=1e-5) and score.lse_d == pytest.approx(distance, abs=1e-5)
    torch.testing.assert_close(score.mean_distances, mean_distances, rtol=1e-6, atol=1e-5)


def test_a_video_too_short_or_audio_not_mono_is_refused_by_name(net):
    scorer = SyncNetScorer(net, max_offset=2)
    crops, audio = video(6, 6 * 640, seed=1)
    assert scorer.score(crops, audio).num_windows == 1
    with pytest.raises(ValueError) as error:
        scorer.score(crops, audio[:-1])
    assert str(error.value) == ("too short for SyncNet: 6 frames and 3839 samples (0.240 s); it needs at least 6 "
                                "frames at 25 fps and 3840 samples at 16000 Hz")
    with pytest.raises(ValueError, match=r"expected mono audio samples \(N,\), got shape \(2, 3840\)"):
        scorer.score(crops, torch.stack([audio, audio]))
    with pytest.raises(ValueError, match=r"expected mono audio samples \(N,\), got shape \(\)"):
        scorer.score(crops, audio[0])


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_the_metric_averages_its_videos_and_refuses_unpaired_lists(net):
    # 16 and 17 windows: enough that the distances at +-15 frames are not all padding, so that LSE-C is not 0
    first, second = video(21, 21 * 640, seed=2), video(22, 22 * 640, seed=3)
    scorer = SyncNetScorer(net)
    singles = [scorer.score(crops, audio) for crops, audio in (first, second, first)]
    assert min(s.lse_c for s in singles) > 0.01 and singles[0].lse_c != singles[1].lse_c
    metric = LipSyncError(weights=net)
    with pytest.raises(RuntimeError, match="before any update"):
        metric.compute()
    metric.update(*first)
    metric.update([second[0], first[0]], [second[1].numpy(), first[1].numpy()])
    result = metric.compute()
    assert int(metric.num_videos) == 3
    assert float(result["lse_c"]) == pytest.approx(np.mean([s.lse_c for s in singles]), rel=1e-6)
    assert float(result["lse_d"]) == pytest.approx(np.mean([s.lse_d for s in singles]), rel=1e-6)
    with pytest.raises(ValueError, match="got 2 videos but 1 audio tracks"):
        metric.update([first[0], second[0]], [first[1]])
    with pytest.raises(ValueError, match="got 1 videos but 2 audio tracks"):
        metric.update([first[0]], [first[1], second[1]])
    assert int(metric.num_videos) == 3


def test_a_score_holds_what_it_was_given():
    score = LipSyncScore(lse_c=1.5, lse_d=7.0, offset=-3, mean_distances=torch.zeros(31), num_windows=4)
    assert (score.lse_c, score.lse_d, score.offset, score.num_windows) == (1.5, 7.0, -3, 4)
