"""A corpus's `.npy` column order (CORPUS.json "arkit_order"): the same clips written in any declared order train
on the same Apple-order tracks; an undeclared order is the documented default and the scan report says so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from datamodules.blendshape_datamodule import BlendshapeDataModule
from datamodules.corpus import scan_corpus
from datamodules.demo.build import build_demo_corpus
from datamodules.extraction.expression_prior import prior_from_tracks
from datamodules.features import FeatureConfig
from datamodules.tracks import CorpusError
from dtl_foundation import arkit

SPEAKERS = ("M001", "W002")  # two speakers of the tiny demo corpus, real (espeak-ng) speech


def corpus_in_order(tiny_corpus: Path, root: Path, order: str | None) -> Path:
    """The tiny corpus's clips of SPEAKERS with every .npy rewritten in `order` (declared unless None)."""
    for speaker in SPEAKERS:
        shutil.copytree(tiny_corpus / speaker, root / speaker)
        for path in (root / speaker / "arkit").rglob("*.npy"):
            np.save(path, arkit.to_order(np.load(path), order or arkit.NPY_ORDER))
    info = {"fps": 25.0} | ({"arkit_order": order} if order else {})
    (root / "CORPUS.json").write_text(json.dumps(info))
    return root


def training_tracks(corpus: Path, work: Path) -> dict[str, np.ndarray]:
    """What the blendshape datamodule trains on, clip by clip."""
    dm = BlendshapeDataModule(str(corpus), features=FeatureConfig(), cache_dir=str(work / "cache"),
                              report_dir=str(work / "report"), val_speakers=0, test_speakers=0)
    dm.prepare_data()
    dm.setup()
    return {c.clip_id: c.blendshapes for c in dm.datasets["train"].clips}


@pytest.fixture(scope="module")
def apple_tracks(tiny_corpus, tmp_path_factory) -> dict[str, np.ndarray]:
    work = tmp_path_factory.mktemp("apple")
    return training_tracks(corpus_in_order(tiny_corpus, work / "corpus", "apple"), work)


@pytest.mark.parametrize("order", ["livelink", "alphabetical"])
def test_a_corpus_declared_in_another_order_trains_on_the_same_tracks(tiny_corpus, apple_tracks, tmp_path, order):
    corpus = corpus_in_order(tiny_corpus, tmp_path / "corpus", order)
    first = sorted((corpus / SPEAKERS[0] / "arkit").rglob("*.npy"))[0]
    assert not np.array_equal(np.load(first), np.load(tiny_corpus / first.relative_to(corpus)))  # other columns
    tracks = training_tracks(corpus, tmp_path)
    assert tracks.keys() == apple_tracks.keys() and len(tracks) > 10
    for clip_id, track in tracks.items():
        np.testing.assert_array_equal(track, apple_tracks[clip_id])
    assert json.loads((tmp_path / "report" / "scan_report.json").read_text())["arkit_order"] == order


def test_undeclared_order_reads_as_the_default_and_the_report_says_so(tiny_corpus, apple_tracks, tmp_path):
    corpus = corpus_in_order(tiny_corpus, tmp_path / "corpus", None)
    tracks = training_tracks(corpus, tmp_path)
    for clip_id, track in tracks.items():
        np.testing.assert_array_equal(track, apple_tracks[clip_id])
    report = json.loads((tmp_path / "report" / "scan_report.json").read_text())
    assert report["arkit_order"] == arkit.NPY_ORDER == "apple" and report["arkit_order_stated"] is False
    assert "does not state arkit_order" in report["arkit_order_note"]


def test_without_the_declaration_a_live_link_corpus_would_be_mirrored(tiny_corpus, apple_tracks, tmp_path):
    """The safeguard's reason: the same files with the declaration removed come back with left and right swapped."""
    corpus = corpus_in_order(tiny_corpus, tmp_path / "corpus", "livelink")
    (corpus / "CORPUS.json").write_text(json.dumps({"fps": 25.0}))
    tracks = training_tracks(corpus, tmp_path)
    clip_id = next(c for c in tracks if apple_tracks[c][:, arkit.INDEX["jawLeft"]].any())
    np.testing.assert_array_equal(tracks[clip_id][:, arkit.INDEX["jawRight"]],
                                  apple_tracks[clip_id][:, arkit.INDEX["jawLeft"]])


def test_unknown_declared_order_names_corpus_json(tiny_corpus, tmp_path):
    corpus = corpus_in_order(tiny_corpus, tmp_path / "corpus", "apple")
    (corpus / "CORPUS.json").write_text(json.dumps({"arkit_order": "arkit"}))
    with pytest.raises(CorpusError, match=r"CORPUS.json: unknown \"arkit_order\" 'arkit'"):
        scan_corpus(corpus, progress=False)


def test_expression_prior_reads_the_declared_order(tiny_corpus, tmp_path):
    apple = prior_from_tracks(corpus_in_order(tiny_corpus, tmp_path / "a", "apple"), progress=False)
    live_link = prior_from_tracks(corpus_in_order(tiny_corpus, tmp_path / "b", "livelink"), progress=False)
    np.testing.assert_allclose(live_link.mean, apple.mean, atol=1e-6)


def test_a_demo_corpus_built_before_arkit_order_was_stated_is_still_accepted(tiny_corpus, tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, root)
    info = json.loads((root / "CORPUS.json").read_text())
    assert info.pop("arkit_order") == "apple"
    (root / "CORPUS.json").write_text(json.dumps(info))
    build_demo_corpus(root, speakers=4, sentences=2, progress=False)  # the tiny corpus's settings: nothing rebuilt
    assert json.loads((root / "CORPUS.json").read_text())["arkit_order"] == "apple"
