"""The demo corpus builder killed inside a clip's track write: no partial clip is left in the corpus, and the same
command completes it without rebuilding the clips that were complete. Also run against a builder that writes
tracks in place (built here, the broken variant): it leaves a corrupt track that the rerun takes as done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from datamodules.corpus import scan_corpus
from dtl_foundation.faults import FAULT_ENV
from fault_helpers import REPO

BUILDER = textwrap.dedent("""
    import sys
    import numpy as np
    import datamodules.demo.build as build
    from dtl_foundation import faults

    def in_place_save(path, array):  # the broken variant: the track itself is written, a kill leaves it cut
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.save(f, array, allow_pickle=False)
        faults.at_write("mid_write", path, path)

    root, writer = sys.argv[1], sys.argv[2]
    if writer == "in_place":
        build.atomic_save_npy = in_place_save
    build.build_demo_corpus(root, speakers=1, sentences=1, workers=1, progress=False)
""")


def build(root: Path, writer: str, fault: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.run([sys.executable, "-c", BUILDER, str(root), writer], env=env, capture_output=True, text=True,
                          timeout=300)


def unreadable(root: Path) -> list[str]:
    """Visible tracks and audio files that do not read whole (hidden `.*.tmp` files are no part of the corpus)."""
    bad = []
    for path in [*root.rglob("*.npy"), *root.rglob("*.wav")]:
        try:
            np.load(path, allow_pickle=False) if path.suffix == ".npy" else sf.read(path)
        except (ValueError, OSError, EOFError, RuntimeError):
            bad.append(str(path.relative_to(root)))
    return bad


@pytest.mark.parametrize("writer", ["atomic", "in_place"])
def test_a_kill_inside_a_track_write_leaves_no_partial_clip_and_the_rerun_rebuilds_only_that_clip(tmp_path, writer):
    root = tmp_path / "corpus"
    # every clip's track is <speaker>/arkit/<emotion>/level_<n>/001.npy here (one sentence): the fifth is cut
    killed = build(root, writer, "mid_write:kill:001.npy#5")
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    tracks = sorted(p.relative_to(root) for p in root.rglob("*.npy"))
    if writer == "in_place":  # the cut track is in the corpus, and the rerun sees both files and keeps it
        assert len(unreadable(root)) == 1
        assert build(root, writer, None).returncode == 0 and len(unreadable(root)) == 1
        return
    assert unreadable(root) == [] and len(tracks) == 4
    audio = sorted(p.relative_to(root) for p in root.rglob("*.wav"))
    assert len(audio) == 5  # the fifth clip's audio was written before its track: an incomplete clip
    clips = [(root / t, root / str(t.with_suffix(".wav")).replace("/arkit/", "/audio/", 1)) for t in tracks]
    complete = {p: p.stat().st_mtime_ns for clip in clips for p in clip}
    assert len(complete) == 8

    again = build(root, writer, None)
    assert again.returncode == 0, again.stdout + again.stderr
    assert {p: p.stat().st_mtime_ns for p in complete} == complete  # the complete clips were not rebuilt
    assert unreadable(root) == []
    manifest = scan_corpus(root, val_speakers=0, test_speakers=0, progress=False)
    assert len(manifest) == 22 and not manifest.skipped
