"""LightningDataModule over a MEAD-layout corpus of audio and ARKit tracks, split by held-out speakers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.blendshape_dataset import BlendshapeWindowDataset, Clip
from datamodules.corpus import scan_corpus
from datamodules.tracks import load_track
from datamodules.feature_cache import FeatureCache, precompute_features
from datamodules.features import FeatureConfig, FeatureStats, frame_loudness_db
from datamodules.manifest import Manifest
from datamodules.split_loaders import SplitLoadersDataModule
from datamodules.demo.build import build_demo_corpus

log = logging.getLogger(__name__)
MANIFEST_NAME = "manifest.jsonl"


class BlendshapeDataModule(SplitLoadersDataModule):
    """Scans (or loads) the manifest, fills the feature cache, and serves blendshape windows.

    `prepare_data` (one process per node) builds the demo corpus when asked, validates the corpus into
    `<report_dir>/manifest.jsonl` and precomputes features; `setup` (every process) reads them back.
    """

    def __init__(self, corpus_dir: str, *, features: FeatureConfig, cache_dir: str, report_dir: str,
                 build_demo: bool = False, demo_speakers: int = 6, demo_sentences: int = 10,
                 demo_seed: int = 0, manifest: str | None = None, fps: float = 25.0, val_speakers: Any = 1,
                 test_speakers: Any = 1, split_seed: int = 0, on_error: str = "fail", window: int = 64,
                 style_frames: int = 64, batch_size: int = 32, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False, ignore=["features"])
        self.features = features
        self.corpus_dir = Path(corpus_dir)
        self.report_dir = Path(report_dir)
        self.audio_mean: np.ndarray | None = None
        self.audio_std: np.ndarray | None = None
        self.blendshape_mean: np.ndarray | None = None
        self.blendshape_std: np.ndarray | None = None
        self.manifest: Manifest | None = None
        self.datasets: dict[str, BlendshapeWindowDataset] = {}

    @property
    def manifest_path(self) -> Path:
        return Path(self.hparams.manifest) if self.hparams.manifest else self.report_dir / MANIFEST_NAME

    @property
    def feature_dim(self) -> int:
        return self.features.dim

    def prepare_data(self) -> None:
        if self.hparams.build_demo:
            build_demo_corpus(self.corpus_dir, speakers=self.hparams.demo_speakers,
                              sentences=self.hparams.demo_sentences, seed=self.hparams.demo_seed,
                              fps=self.hparams.fps)
        if not self.hparams.manifest:
            manifest = scan_corpus(self.corpus_dir, val_speakers=self.hparams.val_speakers,
                                   test_speakers=self.hparams.test_speakers, seed=self.hparams.split_seed,
                                   on_error=self.hparams.on_error,
                                   report_path=self.report_dir / "scan_report.json")
            manifest.save(self.manifest_path)
        manifest = Manifest.load(self.manifest_path)
        report = precompute_features([r.audio_path for r in manifest.records], self._cache(), self.hparams.fps)
        if report.get("failed"):
            raise RuntimeError(f"feature extraction failed for {report['failed']} clips: {report.get('errors')}")

    def _cache(self) -> FeatureCache:
        return FeatureCache(Path(self.hparams.cache_dir), self.features)

    def _load_clips(self, records: list) -> list[Clip]:
        cache = self._cache()
        clips = []
        for r in records:
            track, track_fps = load_track(r.track_path, csv_fps=r.fps, npy_fps=r.fps,
                                          npy_order=self.manifest.arkit_order)
            if abs(track_fps - self.hparams.fps) > 1e-6:
                track = resample_track(track, track_fps, self.hparams.fps)
            audio = cache.get(r.audio_path, self.hparams.fps, num_frames=len(track))
            clips.append(Clip(r.clip_id, r.speaker, r.emotion, r.level, r.sentence, audio, track,
                              loudness=frame_loudness_db(audio, self.features)))
        return clips

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        self.manifest = Manifest.load(self.manifest_path)
        splits = {name: self._load_clips(self.manifest.split(name)) for name in ("train", "val", "test")}
        if not splits["train"]:
            raise ValueError(f"{self.manifest_path}: no training clips")
        if self.audio_mean is None:
            stats = FeatureStats()
            for clip in splits["train"]:
                stats.update(clip.audio)
            self.audio_mean, self.audio_std = stats.mean, stats.std()
        blendshape_stats = FeatureStats()
        for clip in splits["train"]:
            blendshape_stats.update(clip.blendshapes)
        self.blendshape_mean, self.blendshape_std = blendshape_stats.mean, blendshape_stats.std(floor=1e-2)
        for clips in splits.values():
            for c in clips:
                c.audio = (c.audio - self.audio_mean) / self.audio_std
        speakers = sorted(self.manifest.speakers())
        kw = dict(window=self.hparams.window, style_frames=self.hparams.style_frames)
        self.datasets = {name: BlendshapeWindowDataset(clips, speakers, train=name == "train", **kw)
                         for name, clips in splits.items()}
        log.info("clips: %s", {k: len(v) for k, v in splits.items()})

    def state_dict(self) -> dict[str, Any]:
        """The audio normalisation travels with every checkpoint."""
        return {"audio_mean": torch.from_numpy(self.audio_mean) if self.audio_mean is not None else None,
                "audio_std": torch.from_numpy(self.audio_std) if self.audio_std is not None else None}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("audio_mean") is not None:
            self.audio_mean = state_dict["audio_mean"].numpy()
            self.audio_std = state_dict["audio_std"].numpy()


def resample_track(track: np.ndarray, src_fps: float, dst_fps: float) -> np.ndarray:
    """Linear interpolation of a (T, 52) track from `src_fps` to `dst_fps` (e.g. Live Link 60 fps -> 25)."""
    duration = len(track) / src_fps
    n = max(int(round(duration * dst_fps)), 1)
    src_t = np.arange(len(track)) / src_fps
    dst_t = np.arange(n) / dst_fps
    return np.stack([np.interp(dst_t, src_t, track[:, k]) for k in range(track.shape[1])], 1).astype(np.float32)
