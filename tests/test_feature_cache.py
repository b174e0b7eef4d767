"""The feature cache on short real tones (fast enough to run per mutant): where an entry lives, when it is a hit,
what counts as corrupt, the computation log, stale temporaries and precompute's report.

The espeak-ng speech tests of the cache are in tests/test_audio_features.py; faults inside its writes in
tests/faults/test_feature_cache_faults.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from datamodules.feature_cache import (COMPUTATION_LOG_ENV, STALE_TEMP_AGE_S, FeatureCache, content_hash,
                                       precompute_features)
from datamodules.features import FEATURE_VERSION, FeatureConfig, compute_features, fit_frames
from dtl_foundation.media.audio import AudioError, load_audio

CFG = FeatureConfig(n_mels=20, sub_frames=2)  # 40 channels a frame: small entries


def tone(path: Path, frequency: float, seconds: float = 0.4, rate: int = 16000) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(path, (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), rate)
    return path


@pytest.fixture
def audio(tmp_path: Path) -> Path:
    return tone(tmp_path / "a.wav", 220.0)


@pytest.fixture
def cache(tmp_path: Path) -> FeatureCache:
    return FeatureCache(tmp_path / "cache", CFG)


# --- keys and entries ------------------------------------------------------------------------------------

def test_content_hash_is_blake2b_128_of_the_whole_file_read_in_chunks(tmp_path: Path):
    big = tmp_path / "big.bin"
    data = np.random.default_rng(0).bytes((1 << 20) * 2 + 123)  # three 1 MiB chunks, the last one short
    big.write_bytes(data)
    assert content_hash(big) == hashlib.blake2b(data, digest_size=16).hexdigest()
    big.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # a change in the last chunk only
    assert content_hash(big) != hashlib.blake2b(data, digest_size=16).hexdigest()


def test_an_entry_lives_under_the_config_key_and_the_hash_prefix_named_by_hash_and_fps(cache, audio):
    digest = content_hash(audio)
    assert len(digest) == 32
    assert cache.dir == cache.root / CFG.key()
    assert cache.entry_path(audio, 25) == cache.dir / digest[:2] / f"{digest}_25.npy"
    assert cache.entry_path(audio, 25.0) == cache.entry_path(audio, 25)
    assert cache.entry_path(audio, 29.97) == cache.dir / digest[:2] / f"{digest}_29.97.npy"


def test_a_miss_computes_writes_and_counts_then_a_hit_reads_it_back(cache, audio):
    direct = compute_features(load_audio(audio, CFG.sample_rate), 25, CFG)
    features, computed = cache.load_or_compute(audio, 25)
    assert computed and cache.stats == {"hits": 0, "misses": 1, "corrupt": 0}
    np.testing.assert_array_equal(features, direct)
    np.testing.assert_array_equal(np.load(cache.entry_path(audio, 25)), direct)
    features, computed = cache.load_or_compute(audio, 25)
    assert not computed and cache.stats == {"hits": 1, "misses": 1, "corrupt": 0}
    np.testing.assert_array_equal(features, direct)
    np.testing.assert_array_equal(cache.get(audio, 25, num_frames=len(direct) + 3), fit_frames(direct, len(direct) + 3))
    np.testing.assert_array_equal(cache.get(audio, 25, num_frames=4), direct[:4])
    assert cache.stats == {"hits": 3, "misses": 1, "corrupt": 0}


def test_audio_is_read_at_the_configs_sample_rate(tmp_path: Path, audio):
    cfg = FeatureConfig(sample_rate=8000, n_fft=256, win_length=200, hop_length=80, n_mels=20, fmax=3800.0)
    features = FeatureCache(tmp_path / "cache", cfg).get(audio, 25)
    np.testing.assert_array_equal(features, compute_features(load_audio(audio, 8000), 25, cfg))


def test_config_json_is_written_once_beside_the_entries(cache, audio, tmp_path: Path):
    cache.get(audio, 25)
    config_file = cache.dir / "config.json"
    assert json.loads(config_file.read_text()) == dict(dataclasses.asdict(CFG), feature_version=FEATURE_VERSION)
    inode = config_file.stat().st_ino
    cache.get(tone(tmp_path / "b.wav", 330.0), 25)  # a second miss keeps the file (a rewrite is a new inode)
    assert config_file.stat().st_ino == inode


# --- the content-hash memo -------------------------------------------------------------------------------

def test_the_hash_is_remembered_per_path_size_and_mtime(cache, audio):
    first = cache.hash_of(audio)
    stat = audio.stat()
    same_size = bytearray(audio.read_bytes())
    same_size[-1] ^= 1
    audio.write_bytes(bytes(same_size))
    os.utime(audio, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cache.hash_of(audio) == first  # same path, size and mtime: not reread
    assert FeatureCache(cache.root, CFG).hash_of(audio) == content_hash(audio) != first  # another instance reads
    os.utime(audio, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1000))
    assert cache.hash_of(audio) == content_hash(audio)  # a new mtime: reread


def test_unusable_paths_are_audio_errors_naming_the_file(cache, audio, tmp_path: Path):
    with pytest.raises(AudioError, match="gone.wav: no such file"):
        cache.hash_of(tmp_path / "gone.wav")
    with pytest.raises(AudioError, match=r"a.wav/x.wav: cannot stat file \(Not a directory\)"):
        cache.hash_of(audio / "x.wav")
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    with pytest.raises(AudioError, match=r"folder.wav: cannot read file \(Is a directory\)"):
        cache.hash_of(folder)


# --- corrupt entries -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["truncated", "vector", "3-d", "narrower", "wider", "empty", "float64", "float16"])
def test_an_entry_of_the_wrong_form_is_recomputed_with_a_warning(cache, audio, caplog, bad):
    direct = cache.get(audio, 25)
    entry = cache.entry_path(audio, 25)
    if bad == "truncated":
        entry.write_bytes(entry.read_bytes()[:100])
    else:
        np.save(entry, {"vector": direct[0], "3-d": direct[:, :, None], "narrower": direct[:, :-1],
                        "wider": np.concatenate([direct, direct], 1), "empty": direct[:0],
                        "float64": direct.astype(np.float64), "float16": direct.astype(np.float16)}[bad])
    with caplog.at_level(logging.WARNING, logger="datamodules.feature_cache"):
        np.testing.assert_array_equal(cache.get(audio, 25), direct)
    assert cache.stats == {"hits": 0, "misses": 2, "corrupt": 1}
    assert f"{entry}: corrupt feature cache entry" in caplog.text
    np.testing.assert_array_equal(np.load(entry), direct)


class MakesAFolder:
    """Unpickling it makes a folder: a pickled entry that is loaded runs code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return os.mkdir, (str(self.path),)


def test_a_pickled_entry_is_never_unpickled(cache, audio, tmp_path, caplog):
    direct = cache.get(audio, 25)
    entry = cache.entry_path(audio, 25)
    np.save(entry, np.array([MakesAFolder(tmp_path / "ran")], dtype=object), allow_pickle=True)
    with caplog.at_level(logging.WARNING, logger="datamodules.feature_cache"):
        np.testing.assert_array_equal(cache.get(audio, 25), direct)
    assert not (tmp_path / "ran").exists() and "ValueError" in caplog.text


def test_a_hit_with_the_default_config(tmp_path, audio):
    cache = FeatureCache(tmp_path / "cache", FeatureConfig())  # 320 channels a frame
    first = cache.get(audio, 25)
    again = FeatureCache(tmp_path / "cache", FeatureConfig())
    np.testing.assert_array_equal(again.get(audio, 25), first)
    assert cache.stats == {"hits": 0, "misses": 1, "corrupt": 0}
    assert again.stats == {"hits": 1, "misses": 0, "corrupt": 0}  # a wide entry is read back as a hit


# --- the computation log ---------------------------------------------------------------------------------

def test_each_computation_appends_one_line_to_the_log_named_by_the_environment(cache, audio, tmp_path, monkeypatch):
    cache.get(audio, 25)  # no log asked for: none written
    log_file = tmp_path / "computations.log"
    monkeypatch.setenv(COMPUTATION_LOG_ENV, str(log_file))
    other = tone(tmp_path / "b.wav", 330.0)
    cache.get(audio, 29.97)
    cache.get(other, 25)
    cache.get(other, 25)  # a hit: no line
    assert log_file.read_text().splitlines() == [
        f"{content_hash(audio)} 29.97 {os.getpid()} {audio}", f"{content_hash(other)} 25 {os.getpid()} {other}"]
    assert log_file.stat().st_mode & 0o777 == 0o644 & ~_umask()
    assert list(tmp_path.glob("*.log")) == [log_file]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --- stale temporaries -----------------------------------------------------------------------------------

def test_only_temporaries_older_than_the_age_are_removed(cache, audio):
    assert cache.remove_stale_temp_files() == 0  # no folder yet
    cache.get(audio, 25)
    folder = cache.entry_path(audio, 25).parent
    now = time.time()
    ages = {".a.npy.1.tmp": 100.0, ".b.npy.2.tmp": 200.0, ".c.npy.3.tmp": 10.0, "d.npy": 1000.0}
    for name, age in ages.items():
        (folder / name).write_bytes(b"x")
        os.utime(folder / name, (now - age, now - age))
    assert cache.remove_stale_temp_files(max_age_s=50.0) == 2
    assert sorted(p.name for p in folder.iterdir() if p.name.endswith("tmp")) == [".c.npy.3.tmp"]
    assert (folder / "d.npy").exists() and cache.entry_path(audio, 25).exists()
    os.utime(folder / ".c.npy.3.tmp", (now - 2 * STALE_TEMP_AGE_S, now - 2 * STALE_TEMP_AGE_S))
    (folder / ".e.npy.4.tmp").write_bytes(b"x")  # fresh: a writer may be using it
    (folder / ".f.npy.5.tmp").symlink_to(folder / "gone")  # as if removed by another process meanwhile
    assert cache.remove_stale_temp_files() == 1
    assert sorted(p.name for p in folder.glob(".*.tmp")) == [".e.npy.4.tmp", ".f.npy.5.tmp"]


# --- precompute ------------------------------------------------------------------------------------------

def test_precompute_in_this_process_reports_counts_and_sorted_errors(cache, tmp_path, capfd, monkeypatch):
    log_file = tmp_path / "computations.log"
    monkeypatch.setenv(COMPUTATION_LOG_ENV, str(log_file))
    clips = [tone(tmp_path / f"{i}.wav", 200.0 + 50 * i) for i in range(3)]
    cache.get(clips[0], 25)
    stale = cache.entry_path(clips[0], 25).parent / ".old.npy.1.tmp"
    stale.write_bytes(b"x")
    os.utime(stale, (time.time() - 2 * STALE_TEMP_AGE_S,) * 2)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    report = precompute_features([tmp_path / "z_gone.wav", *clips, bad], cache, 25, progress=False)
    assert {k: report[k] for k in ("total", "computed", "cached", "failed")} == \
        {"total": 5, "computed": 2, "cached": 1, "failed": 2}
    assert report["errors"][0].startswith(f"{bad}: unreadable audio")
    assert report["errors"][1] == f"{tmp_path / 'z_gone.wav'}: no such file"
    assert cache.stats == {"hits": 1, "misses": 3, "corrupt": 0}
    assert not stale.exists()
    assert {line.split()[2] for line in log_file.read_text().splitlines()} == {str(os.getpid())}  # no pool
    assert "features" not in capfd.readouterr().err  # progress=False: no bar
    precompute_features(clips, cache, 25)
    assert "features: 100%" in capfd.readouterr().err
    assert len(precompute_features(clips, cache, 25, workers=-1, progress=False)["errors"]) == 0  # no pool either


def test_precompute_reports_a_failure_other_than_bad_audio_and_goes_on(tmp_path):
    clip = tone(tmp_path / "a.wav", 220.0)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / CFG.key()).write_text("a file where the key folder should be")
    report = precompute_features([clip, clip], FeatureCache(tmp_path / "cache", CFG), 25, progress=False)
    assert report["failed"] == 2 and report["computed"] == 0
    assert report["errors"][0].startswith(f"{clip}: FileExistsError while computing features (")


def test_precompute_in_worker_processes_counts_into_the_callers_stats(cache, tmp_path, monkeypatch):
    log_file = tmp_path / "computations.log"
    monkeypatch.setenv(COMPUTATION_LOG_ENV, str(log_file))
    clips = [tone(tmp_path / f"{i}.wav", 200.0 + 50 * i) for i in range(3)]
    cache.get(clips[0], 25)
    cache.get(clips[1], 25)
    report = precompute_features([*clips, tmp_path / "gone.wav"], cache, 25, workers=1, progress=False)
    assert (report["computed"], report["cached"], report["failed"]) == (1, 2, 1)
    assert report["errors"] == [f"{tmp_path / 'gone.wav'}: no such file"]
    assert cache.stats == {"hits": 2, "misses": 3, "corrupt": 0}
    pids = [line.split()[2] for line in log_file.read_text().splitlines()]
    assert len(pids) == 3 and pids[2] != str(os.getpid())  # computed in a worker
    np.testing.assert_array_equal(np.load(cache.entry_path(clips[2], 25)), cache.get(clips[2], 25))
