"""Feature-cache entries under faults inside the write: a kill mid-write, a writer frozen mid-write while another
process reads, a full disk. Each is also run against a writer that writes in place (built here, the broken
variant): it must fail the same checks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import datamodules.feature_cache as feature_cache
from datamodules.feature_cache import FeatureCache, precompute_features
from datamodules.features import FeatureConfig
from dtl_foundation.faults import FAULT_ENV
from fault_helpers import fill_up, small_tmpfs, wait_until_stopped

REPO = Path(__file__).resolve().parents[2]
FILLER = textwrap.dedent("""
    import sys
    import numpy as np
    from dtl_foundation import faults
    import datamodules.feature_cache as feature_cache
    from datamodules.feature_cache import FeatureCache, precompute_features
    from datamodules.features import FeatureConfig

    def in_place_save(path, array):  # the broken variant: the entry itself is written, a reader sees it grow
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.save(f, array, allow_pickle=False)
        faults.at_write("mid_write", path, path)

    root, writer, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    if writer == "in_place":
        feature_cache.atomic_save_npy = in_place_save
    cache = FeatureCache(root, FeatureConfig())
    report = precompute_features(paths, cache, 25, progress=False)
    print(cache.stats, report["errors"], flush=True)
""")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """6 distinct ~2 s utterances."""
    assert shutil.which("espeak-ng"), "espeak-ng is not installed (make test installs it)"
    root = tmp_path_factory.mktemp("clips")
    out = []
    for i in range(6):
        subprocess.run(["espeak-ng", "-w", str(root / f"clip{i}.wav"), f"Sentence {i} for the cache."], check=True)
        out.append(root / f"clip{i}.wav")
    return out


def filler(root: Path, clips: list[Path], writer: str, fault: str | None) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.Popen([sys.executable, "-c", FILLER, str(root), writer, *map(str, clips)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def damaged_entries(root: Path) -> list[str]:
    """Visible entries that do not load as a whole array (hidden `.*.tmp` files are no entries)."""
    bad = []
    for entry in root.rglob("*.npy"):
        try:
            np.load(entry, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            bad.append(entry.name)
    return bad


@pytest.mark.parametrize("writer", ["atomic", "in_place"])
def test_a_kill_inside_an_entry_write_leaves_no_partial_entry_and_loses_nothing(tmp_path, clips, writer):
    root = tmp_path / "cache"
    victim = FeatureCache(root, FeatureConfig()).entry_path(clips[3], 25).name
    killed = filler(root, clips, writer, f"mid_write:kill:{victim}")
    assert killed.wait(timeout=120) == -signal.SIGKILL, killed.stdout.read()
    damaged = damaged_entries(root)
    if writer == "in_place":  # the broken variant fails the check below
        assert damaged == [victim]
        return
    assert damaged == []
    complete = {p.name: p.stat().st_mtime_ns for p in root.rglob("*.npy")}
    assert len(complete) == 3 and victim not in complete  # clips 0-2 done, clip 3 killed inside its write
    again = filler(root, clips, "atomic", None)
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0, out
    assert "'hits': 3, 'misses': 3, 'corrupt': 0" in out  # nothing complete recomputed, nothing corrupt
    assert {p.name: p.stat().st_mtime_ns for p in root.rglob("*.npy") if p.name in complete} == complete
    assert damaged_entries(root) == [] and len(list(root.rglob("*.npy"))) == 6


@pytest.mark.parametrize("writer", ["atomic", "in_place"])
def test_a_reader_never_sees_an_entry_another_process_is_writing(tmp_path, clips, writer):
    """Process A freezes halfway through writing entry 0; process B fills the cache meanwhile, then A finishes."""
    root = tmp_path / "cache"
    victim = FeatureCache(root, FeatureConfig()).entry_path(clips[0], 25).name
    writer_a = filler(root, clips[:1], writer, f"mid_write:stop:{victim}")
    wait_until_stopped(writer_a)
    cache_b = FeatureCache(root, FeatureConfig())
    precompute_features(clips[:2], cache_b, 25, progress=False)
    writer_a.send_signal(signal.SIGCONT)
    assert writer_a.wait(timeout=120) == 0, writer_a.stdout.read()
    if writer == "in_place":  # B read A's half-written entry as corrupt
        assert cache_b.stats["corrupt"] == 1
        return
    assert cache_b.stats == {"hits": 0, "misses": 2, "corrupt": 0}
    assert damaged_entries(root) == []


def in_place_save(path: Path, array: np.ndarray) -> None:
    """The broken variant in this process: the entry itself is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


@pytest.mark.parametrize("writer", ["atomic", "in_place"])
def test_a_full_disk_during_an_entry_write_is_a_clear_error_and_the_cache_still_loads(tmp_path, clips, writer,
                                                                                          monkeypatch):
    """A real full disk: the cache on a small tmpfs with every free byte taken after two entries."""
    if writer == "in_place":
        monkeypatch.setattr(feature_cache, "atomic_save_npy", in_place_save)
    with small_tmpfs(tmp_path / "cache", size="8m") as root:
        cache = FeatureCache(root, FeatureConfig())
        precompute_features(clips[:2], cache, 25, progress=False)
        filler = fill_up(root)
        entry = cache.entry_path(clips[2], 25)
        with pytest.raises(OSError, match="No space left on device") as error:
            cache.get(clips[2], 25)
        if writer == "in_place":  # a partial entry is left, and the error does not say which file
            assert damaged_entries(root) == [entry.name] and str(entry) not in str(error.value)
            return
        assert f"not written (a previous version is kept): '{entry}'" in str(error.value)
        assert not list(root.rglob("*.tmp")) and not entry.exists()  # no temporary holding space, no partial entry
        full = FeatureCache(root, FeatureConfig())  # still full: what is there loads
        for clip in clips[:2]:
            full.get(clip, 25)
        assert full.stats == {"hits": 2, "misses": 0, "corrupt": 0}
        filler.unlink()
        again = FeatureCache(root, FeatureConfig())
        for clip in clips[:3]:
            again.get(clip, 25)
        assert again.stats == {"hits": 2, "misses": 1, "corrupt": 0}
