"""The expression prior of `dtl data extract`: learnt from .npy and Live Link tracks, saved, loaded, and its files'
problems named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dtl_foundation.arkit import INDEX
from datamodules.tracks import load_track
from datamodules.manifest import ClipRecord, Manifest
from datamodules.extraction.expression_prior import (ExpressionPrior, MomentSums, PriorError, learn_prior,
                                                     prior_from_tracks)


def _write_track(root: Path, speaker: str, sentence: str, track: np.ndarray, csv: bool = False) -> Path:
    from dtl_foundation.arkit_live_link import LiveLinkTrack, write_live_link_csv

    path = root / speaker / "arkit" / "neutral" / "level_1" / f"{sentence}{'.csv' if csv else '.npy'}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if csv:
        write_live_link_csv(path, LiveLinkTrack(track, 60.0))
    else:
        np.save(path, track.astype(np.float32))
    return path


def _correlated_tracks(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Tracks where mouthPress follows mouthClose (r about 0.8) and jawOpen moves against it, the rest noise."""
    track = rng.uniform(0.0, 0.2, (frames, 52))
    close = rng.uniform(0.0, 0.8, frames)
    track[:, INDEX["mouthClose"]] = close
    track[:, INDEX["mouthPressLeft"]] = np.clip(0.6 * close + rng.normal(0, 0.1, frames), 0, 1)
    track[:, INDEX["jawOpen"]] = np.clip(0.7 - 0.5 * close + rng.normal(0, 0.1, frames), 0, 1)
    return track


def test_prior_learns_a_known_correlation_from_npy_and_live_link_tracks(tmp_path):
    """The prior's correlations are the tracks'; the covariance is Ledoit-Wolf's (checked against scikit-learn)
    plus the floor; --speakers keeps only those speakers' files."""
    from sklearn.covariance import ledoit_wolf

    rng = np.random.default_rng(0)
    a, b, c = _correlated_tracks(rng, 1500), _correlated_tracks(rng, 900), rng.uniform(0, 1, (400, 52))
    files = [_write_track(tmp_path, "A001", "001", a),
             _write_track(tmp_path, "A001", "002", b, csv=True)]  # a Live Link Face capture, read by column name
    _write_track(tmp_path, "B002", "001", c)  # uncorrelated: left out by the speaker choice
    prior = prior_from_tracks(tmp_path, ["A001"], progress=False)
    frames = np.concatenate([load_track(f)[0] for f in files]).astype(np.float64)  # as stored (float32, CSV text)
    assert prior.frames == 2400 and prior.speakers == ("A001",)
    empirical = np.corrcoef(frames[:, INDEX["mouthClose"]], frames[:, INDEX["mouthPressLeft"]])[0, 1]
    assert empirical > 0.75
    assert prior.correlation("mouthClose", "mouthPressLeft") == pytest.approx(empirical, abs=0.02)
    assert prior.correlation("mouthClose", "jawOpen") < -0.7
    assert abs(prior.correlation("mouthClose", "browInnerUp")) < 0.1
    np.testing.assert_allclose(prior.mean, frames.mean(0), atol=1e-9)
    shrunk, shrinkage = ledoit_wolf(frames)
    np.testing.assert_allclose(prior.covariance - prior.min_std ** 2 * np.eye(52), shrunk, atol=1e-10)
    assert prior.shrinkage == pytest.approx(shrinkage, abs=1e-9)
    # a likely frame (mouth closed and pressed, jaw shut) is nearer the mean than the same values recombined
    likely = prior.mean.copy()
    likely[[INDEX["mouthClose"], INDEX["mouthPressLeft"], INDEX["jawOpen"]]] = [0.7, 0.42, 0.35]
    unlikely = likely.copy()
    unlikely[INDEX["mouthPressLeft"]] = 0.0
    assert prior.mahalanobis(likely[None])[0] < prior.mahalanobis(unlikely[None])[0]
    everyone = prior_from_tracks(tmp_path, progress=False)
    assert everyone.frames == 2800 and everyone.speakers == ("A001", "B002")
    records = [ClipRecord(f"A001_neutral_level_1_{f.stem}", "A001", "neutral", 1, f.stem, "", str(f), None, 25.0,
                          0, 0.0, "train") for f in files]
    Manifest(records=records, root=str(tmp_path)).save(tmp_path / "manifest.jsonl")
    listed = prior_from_tracks(tmp_path / "manifest.jsonl", progress=False)  # a manifest lists the same tracks
    np.testing.assert_array_equal(listed.covariance, prior.covariance)
    sums = MomentSums()  # streaming in pieces gives the same estimate as one piece
    for piece in np.array_split(frames, 7):
        sums.add(piece)
    np.testing.assert_allclose(sums.ledoit_wolf()[1], shrunk, atol=1e-10)


def test_prior_saves_loads_and_names_the_file_and_problem(tmp_path):
    rng = np.random.default_rng(1)
    prior = learn_prior([_correlated_tracks(rng, 300)], speakers=["A001"])
    path = tmp_path / "priors" / "prior.npz"
    prior.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["prior.npz"]  # written atomically: no temporary left
    loaded = ExpressionPrior.load(path)
    np.testing.assert_array_equal(loaded.mean, prior.mean)
    np.testing.assert_array_equal(loaded.covariance, prior.covariance)
    assert (loaded.frames, loaded.shrinkage, loaded.min_std, loaded.speakers) == (300, prior.shrinkage, 0.01,
                                                                                   ("A001",))
    assert loaded.precision([INDEX["jawOpen"], INDEX["mouthClose"]]).shape == (2, 2)

    with pytest.raises(PriorError, match=r"missing\.npz: no such expression prior file"):
        ExpressionPrior.load(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(PriorError, match=r"garbage\.npz: unreadable expression prior"):
        ExpressionPrior.load(garbage)
    other = tmp_path / "other.npz"
    np.savez(other, mean=prior.mean)
    with pytest.raises(PriorError, match=r"other\.npz: not an expression prior"):
        ExpressionPrior.load(other)
    fields = dict(np.load(path))
    np.savez(tmp_path / "short.npz", **{**fields, "mean": prior.mean[:51]})
    with pytest.raises(PriorError, match=r"short\.npz: an expression prior needs a \(52,\) mean"):
        ExpressionPrior.load(tmp_path / "short.npz")
    np.savez(tmp_path / "indefinite.npz", **{**fields, "covariance": -np.eye(52)})
    with pytest.raises(PriorError, match=r"indefinite\.npz: the prior's covariance is not positive definite"):
        ExpressionPrior.load(tmp_path / "indefinite.npz")

    with pytest.raises(PriorError, match=r"bad\.npy: a track must be \(frames, 52\), got \(10, 51\)"):
        learn_prior([np.zeros((10, 51))], names=["bad.npy"])
    with pytest.raises(PriorError, match="NaN or inf"):
        learn_prior([np.full((10, 52), np.nan)])
    with pytest.raises(PriorError, match="at least 2 frames"):
        learn_prior([np.zeros((1, 52))])
    corpus = tmp_path / "corpus"
    short = _write_track(corpus, "A001", "001", np.zeros((10, 52)))
    np.save(short, np.zeros((10, 50), np.float32))
    with pytest.raises(PriorError, match=r"001\.npy: track has 50 columns"):
        prior_from_tracks(corpus, progress=False)
    with pytest.raises(PriorError, match=r"no tracks of the speakers \['Z009'\]"):
        prior_from_tracks(corpus, ["Z009"], progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PriorError, match="empty: no ARKit tracks"):
        prior_from_tracks(tmp_path / "empty", progress=False)
    (tmp_path / "notes.txt").write_text("not a manifest")
    with pytest.raises(PriorError, match=r"notes\.txt: neither a corpus folder nor a readable manifest"):
        prior_from_tracks(tmp_path / "notes.txt", progress=False)
    with pytest.raises(PriorError, match="nowhere: no such corpus folder or manifest"):
        prior_from_tracks(tmp_path / "nowhere", progress=False)
