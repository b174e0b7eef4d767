"""On-disk cache of aligned audio features keyed by audio content, safe for many concurrent writers."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Iterable

import numpy as np
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from dtl_foundation.media.audio import AudioError, load_audio
from datamodules.features import FEATURE_VERSION, FeatureConfig, compute_features, fit_frames
from dtl_foundation.atomic_files import atomic_save_npy, atomic_write_text

__all__ = ["FeatureCache", "precompute_features", "content_hash", "COMPUTATION_LOG_ENV"]

log = logging.getLogger(__name__)

# When set to a file path, every computation (cache miss) appends one line "<hash> <fps> <pid> <audio path>"
# with a single O_APPEND write, so tests and audits can count computations across processes.
COMPUTATION_LOG_ENV = "DTL_FEATURE_CACHE_LOG"
STALE_TEMP_AGE_S = 3600.0  # a writer's temp file lives for milliseconds; one this old was left by a killed process
_HASH_CHUNK = 1 << 20


def content_hash(path: str | os.PathLike) -> str:
    """blake2b (128-bit, hex) of the file's bytes, read in 1 MiB chunks."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class FeatureCache:
    """compute_features(load_audio(path)) memoised under root/<cfg.key()>/<hash[:2]>/<hash>_<fps>.npy.

    The key is the audio's content hash, so a renamed or copied file hits and an edited one misses. An entry
    holds the natural round(duration * fps) frames; `num_frames` is applied on read (fit_frames). Entries are
    written to a temp file, fsynced and renamed (io_utils.atomic_save_npy): concurrent writers of one entry
    write the same features (to float rounding) and the last rename wins, and a killed writer leaves at worst
    a stray temp file, never a partial entry. An entry that fails to load or has the wrong shape is recomputed
    and replaced.

    `stats` counts this instance's hits, misses (= computations) and corrupt entries replaced; see also
    COMPUTATION_LOG_ENV for counting across processes.
    """

    def __init__(self, root: str | os.PathLike, cfg: FeatureConfig) -> None:
        self.root = Path(root)
        self.cfg = cfg
        self.dir = self.root / cfg.key()
        self.stats = {"hits": 0, "misses": 0, "corrupt": 0}
        self._hashes: dict[tuple[str, int, int], str] = {}

    def get(self, audio_path: str | os.PathLike, fps: float, num_frames: int | None = None) -> np.ndarray:
        """(num_frames or round(duration * fps), cfg.dim) float32 features; AudioError for unusable audio."""
        features, _ = self.load_or_compute(audio_path, fps)
        return fit_frames(features, num_frames)

    def load_or_compute(self, audio_path: str | os.PathLike, fps: float) -> tuple[np.ndarray, bool]:
        """The entry's natural-length features and whether they had to be computed."""
        entry = self.entry_path(audio_path, fps)
        features = self._load(entry)
        if features is not None:
            self.stats["hits"] += 1
            return features, False
        features = compute_features(load_audio(audio_path, self.cfg.sample_rate), fps, self.cfg)
        self._write_config_once()
        atomic_save_npy(entry, features)
        self.stats["misses"] += 1
        self._log_computation(entry, fps, audio_path)
        return features, True

    def entry_path(self, audio_path: str | os.PathLike, fps: float) -> Path:
        digest = self.hash_of(audio_path)
        return self.dir / digest[:2] / f"{digest}_{float(fps):.10g}.npy"

    def hash_of(self, audio_path: str | os.PathLike) -> str:
        """The content hash, remembered per (path, size, mtime_ns) so repeated gets do not reread the file."""
        path = os.path.abspath(audio_path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise AudioError(audio_path, "no such file") from None
        except OSError as e:
            raise AudioError(audio_path, f"cannot stat file ({e.strerror})") from None
        memo_key = (path, st.st_size, st.st_mtime_ns)
        digest = self._hashes.get(memo_key)
        if digest is None:
            try:
                digest = content_hash(path)
            except OSError as e:
                raise AudioError(audio_path, f"cannot read file ({e.strerror})") from None
            self._hashes[memo_key] = digest
        return digest

    def remove_stale_temp_files(self, max_age_s: float = STALE_TEMP_AGE_S) -> int:
        """Delete temp files that killed writers left behind (older than max_age_s); returns how many."""
        removed = 0
        cutoff = time.time() - max_age_s
        for tmp in self.dir.rglob(".*.tmp") if self.dir.is_dir() else ():
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def _load(self, entry: Path) -> np.ndarray | None:
        try:
            features = np.load(entry, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as e:
            self._corrupt(entry, f"{type(e).__name__}: {e}")
            return None
        if features.ndim != 2 or features.shape[1] != self.cfg.dim or len(features) == 0 \
                or features.dtype != np.float32:
            self._corrupt(entry, f"array of shape {features.shape} and dtype {features.dtype}, expected "
                                 f"(T, {self.cfg.dim}) float32")
            return None
        return features

    def _corrupt(self, entry: Path, why: str) -> None:
        self.stats["corrupt"] += 1
        log.warning("%s: corrupt feature cache entry (%s); recomputing it", entry, why)

    def _write_config_once(self) -> None:
        """root/<key>/config.json says which settings a key folder holds (for people; the key is the truth)."""
        config_file = self.dir / "config.json"
        if not config_file.exists():
            text = json.dumps(dict(asdict(self.cfg), feature_version=FEATURE_VERSION), indent=2) + "\n"
            atomic_write_text(config_file, text)

    @staticmethod
    def _log_computation(entry: Path, fps: float, audio_path: str | os.PathLike) -> None:
        log_path = os.environ.get(COMPUTATION_LOG_ENV)
        if not log_path:
            return
        line = f"{entry.name.split('_')[0]} {float(fps):.10g} {os.getpid()} {audio_path}\n".encode()
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


def precompute_features(audio_paths: Iterable[str | os.PathLike], cache: FeatureCache, fps: float,
                        workers: int = 0, progress: bool = True) -> dict:
    """Fill `cache` for every path: {"total", "computed", "cached", "failed", "errors": ["<path>: <problem>"]}.

    workers > 0 computes in a pool of that many spawned processes (each with its own FeatureCache on the same
    root); `cache.stats` is updated with their hits and misses either way. BLAS runs single-threaded meanwhile:
    its threads spinning on these small matrices halved throughput on a 2-core machine.
    """
    paths = [str(p) for p in audio_paths]
    report = {"total": len(paths), "computed": 0, "cached": 0, "failed": 0, "errors": []}
    cache.remove_stale_temp_files()
    with tqdm(total=len(paths), desc="features", unit="clip", disable=not progress) as bar:
        def record(outcome: str, error: str | None) -> None:
            report[outcome] += 1
            if error:
                report["errors"].append(error)
            bar.update(1)
            bar.set_postfix(computed=report["computed"], cached=report["cached"], failed=report["failed"],
                            refresh=False)

        if workers <= 0:
            with threadpool_limits(limits=1):
                for path in paths:
                    record(*_fill_one(cache, path, fps))
        else:
            context = multiprocessing.get_context("spawn")  # no fork of a parent that may hold threads or CUDA
            with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                     initargs=(cache.root, cache.cfg)) as pool:
                futures = [pool.submit(_fill_in_worker, path, fps) for path in paths]
                for future in as_completed(futures):
                    outcome, error = future.result()
                    if outcome != "failed":
                        cache.stats["misses" if outcome == "computed" else "hits"] += 1
                    record(outcome, error)
    report["errors"].sort()
    return report


def _fill_one(cache: FeatureCache, path: str, fps: float) -> tuple[str, str | None]:
    try:
        _, computed = cache.load_or_compute(path, fps)
    except AudioError as e:
        return "failed", str(e)
    except Exception as e:  # noqa: BLE001  (one damaged clip must not stop the others; it is reported)
        return "failed", f"{path}: {type(e).__name__} while computing features ({e})"
    return ("computed" if computed else "cached"), None


_worker_cache: FeatureCache | None = None


def _init_worker(root: Path, cfg: FeatureConfig) -> None:
    global _worker_cache
    threadpool_limits(limits=1)  # for the rest of this worker's life
    _worker_cache = FeatureCache(root, cfg)


def _fill_in_worker(path: str, fps: float) -> tuple[str, str | None]:
    assert _worker_cache is not None, "_init_worker did not run"
    return _fill_one(_worker_cache, path, fps)
