"""`dtl data extract` checks its options, prior and corpus files before any clip, reports each clip that fails and
why, and grades clips by quality thresholds (the fit and the round trip: test_extraction.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datamodules.extraction.books import ExtractError, ExtractOptions, parse_shard, select
from datamodules.extraction.extract import run_extraction
from datamodules.extraction.quality import QualityThresholds, clip_quality
from dtl_foundation.media.video_write import write_video
from experiments.data_cli import main as data_main


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    """The rig cache (default rigs and the landmark calibration) for this module: $DTL_CACHE_DIR/rigs."""
    return str(tmp_path_factory.mktemp("dtl_cache") / "rigs")


def test_shards_partition_the_clips_and_the_options_are_checked(tmp_path):
    clips = list(range(10))
    parts = [select(clips, (k, 3), None) for k in range(3)]
    assert sorted(sum(parts, [])) == clips and all(parts)
    assert select(clips, (1, 2), 4) == [1, 3]
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "1", "a/b", "-1/3"):
        with pytest.raises(ExtractError, match="--shard"):
            parse_shard(bad)
    with pytest.raises(ExtractError, match="no such corpus"):
        run_extraction(ExtractOptions(corpus=tmp_path / "nowhere", out=tmp_path / "out", progress=False))
    (tmp_path / "empty" / "M001" / "video" / "front").mkdir(parents=True)
    with pytest.raises(ExtractError, match="no videos"):
        run_extraction(ExtractOptions(corpus=tmp_path / "empty", out=tmp_path / "out", progress=False))


def test_a_bad_prior_stops_the_extraction_before_any_clip(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    video = corpus / "M001" / "video" / "front" / "neutral" / "level_1" / "001.mp4"
    video.parent.mkdir(parents=True)
    video.write_bytes(b"x")
    bad = tmp_path / "prior.npz"
    bad.write_bytes(b"not a prior")
    with pytest.raises(ExtractError, match=r"--prior: .*prior\.npz: unreadable expression prior"):
        run_extraction(ExtractOptions(corpus=corpus, out=tmp_path / "out", prior=bad, progress=False))
    with pytest.raises(ExtractError, match="--prior is for the fit backend, not mediapipe"):
        run_extraction(ExtractOptions(corpus=corpus, out=tmp_path / "out", prior=bad, backend="mediapipe"))
    assert data_main(["extract", str(corpus), "--out", str(tmp_path / "out"), "--prior",
                      str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz: no such expression prior file" in capsys.readouterr().err
    assert not (tmp_path / "out" / "extraction" / "clips").exists()


def test_unreadable_and_faceless_videos_are_failures_in_the_summary(tmp_path, cache_dir):
    """A broken file and a video without a face are reported per clip; the run goes on and says why."""
    corpus = tmp_path / "corpus"
    broken = corpus / "M001" / "video" / "front" / "neutral" / "level_1" / "001.mp4"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a video")
    blank = broken.with_name("002.mp4")
    frames = np.full((12, 64, 64, 3), 90, np.uint8)
    write_video(blank, frames, 25)
    write_video(broken.with_name("003.mp4"), frames[:2], 25)
    report = run_extraction(ExtractOptions(corpus=corpus, out=tmp_path / "out", cache_dir=cache_dir,
                                           progress=False))
    kinds = {f["clip_id"]: f["kind"] for f in report.failed}
    assert kinds == {"M001_neutral_level_1_001": "unreadable", "M001_neutral_level_1_002": "no_face",
                     "M001_neutral_level_1_003": "too_short"}, report.failed
    summary = json.loads((tmp_path / "out" / "extraction" / "summary.json").read_text())
    assert summary["failures_by_kind"] == {"unreadable": 1, "no_face": 1, "too_short": 1}
    assert not list((tmp_path / "out").glob("*/arkit/*/*/*.npy"))


def test_quality_measures_and_thresholds():
    T = 50
    smooth = np.tile(np.linspace(0, 1, T)[:, None], (1, 52))
    shaky = smooth + np.random.default_rng(0).normal(0, 0.1, smooth.shape)
    face = np.ones(T, bool)
    face[:10] = False
    calm, noisy = clip_quality(smooth, face, 0.01), clip_quality(np.clip(shaky, 0, 1), face, 0.09)
    assert calm.coeff_jitter < 1e-6 and noisy.coeff_jitter > 0.05 and calm.face_share == 0.8
    limits = QualityThresholds()
    assert limits.failures(calm) == ["face_share 0.8000 < 0.9"]
    assert {r.split()[0] for r in limits.failures(noisy)} == {"residual", "face_share", "coeff_jitter"}
    assert calm.as_dict()["landmark_jitter"] is None  # no landmarks: not measured, not failed


def test_corpus_json_and_csv_rate_are_checked_before_any_clip(tmp_path):
    corpus = tmp_path / "corpus"
    video = corpus / "M001" / "video" / "front" / "neutral" / "level_1" / "001.mp4"
    video.parent.mkdir(parents=True)
    video.write_bytes(b"x")
    with pytest.raises(ExtractError, match="--csv: no timecode for 12.5 fps"):
        run_extraction(ExtractOptions(corpus=corpus, out=tmp_path / "a", fps=12.5, csv=True, progress=False))
    out = tmp_path / "b"
    out.mkdir()
    (out / "CORPUS.json").write_text(json.dumps({"arkit_order": "livelink"}))
    with pytest.raises(ExtractError, match="CORPUS.json says the .npy tracks are in 'livelink' order"):
        run_extraction(ExtractOptions(corpus=corpus, out=out, progress=False))
