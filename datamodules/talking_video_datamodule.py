"""LightningDataModule over talking videos: (source, driving) frame pairs from one video, face-cropped and resized.

Each video is decoded once, cropped (a fixed square per video from dlib landmarks of its first frames, the framing
dtl_foundation/media/portrait.py uses for portraits; or the centre square for videos that already are face crops) and
cached as uint8 .npy under `cache_dir`, keyed by the file's path, size, mtime and the crop settings.
Where the corpus has head pose tracks (<ID>/head_pose/..., the ground truth of `dtl data demo --video` or the estimates
of `dtl data extract`), every item also carries the driving frame's (yaw, pitch, roll) for the head-pose loss.
Splits: "speaker" keeps the manifest's held-out speakers for val/test; "frames" holds out the last
`holdout_fraction` of every video's frames (fine-tuning on a short video of one person).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from datamodules.corpus import scan_corpus
from dtl_foundation.atomic_files import atomic_save_npy
from datamodules.manifest import ClipRecord, Manifest
from dtl_foundation.mead import ClipKey
from dtl_foundation.media.video_read import VideoReadError, read_frames
from dtl_foundation.media.face_detect import FaceLandmarker
from dtl_foundation.media.portrait import CropBox, PortraitError, detect_crop_box
from dtl_foundation.media.portrait import crop as crop_image  # `crop` names the policy argument below

log = logging.getLogger(__name__)
CROPS = ("detect", "center")
SPLIT_MODES = ("speaker", "frames")
DETECT_FRAMES = 5


def with_videos(manifest: Manifest) -> list[ClipRecord]:
    """Records whose video exists (a manifest written before the videos gets their layout path filled in)."""
    root = Path(manifest.root)
    kept = []
    for r in manifest.records:
        path = Path(r.video_path) if r.video_path else ClipKey(r.speaker, r.emotion, r.level, r.sentence).video_path(
            root, manifest.view)
        if path.is_file():
            kept.append(replace(r, video_path=str(path)))
    return kept


def crop_video_frames(frames: np.ndarray, size: int, crop: str, source: str | os.PathLike) -> np.ndarray:
    """(T, size, size, 3) uint8 face crops of (T, H, W, 3) frames, one crop box for the whole video."""
    if crop == "center":
        height, width = frames.shape[1:3]
        side = min(height, width)
        box = CropBox(left=(width - side) / 2, top=(height - side) / 2, side=side)
    elif crop == "detect":
        landmarker = FaceLandmarker(upsample=1)
        box = None
        for frame in frames[:DETECT_FRAMES]:
            try:
                box = detect_crop_box(frame, landmarker, source)
                break
            except PortraitError:
                continue
        if box is None:
            raise VideoReadError(source, f"no face found in its first {DETECT_FRAMES} frames (dlib)")
    else:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    return np.stack([crop_image(frame, box, size) for frame in frames])


class FrameCache:
    """Cropped frames of each video as <cache_dir>/<key>.npy, written atomically, reused while the video is the same."""

    def __init__(self, cache_dir: str | os.PathLike, size: int, crop: str, fps: int) -> None:
        self.dir, self.size, self.crop, self.fps = Path(cache_dir), size, crop, fps

    def path(self, video: str | os.PathLike) -> Path:
        stat = Path(video).stat()
        key = f"{Path(video).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.size}|{self.crop}|{self.fps}"
        return self.dir / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.npy"

    def load(self, video: str | os.PathLike) -> np.ndarray:
        path = self.path(video)
        if path.is_file():
            return np.load(path)
        frames = crop_video_frames(read_frames(video, self.fps), self.size, self.crop, video)
        atomic_save_npy(path, frames)
        return frames


def load_head_angles(record: ClipRecord, root: Path, frames: int, fps: float) -> np.ndarray | None:
    """(frames, 3) yaw, pitch, roll in degrees of the clip's head pose track at the decoded frame rate, if it has one.

    The track's .npy holds one row per frame at the corpus's track rate (record.fps), as for the ARKit tracks.
    """
    path = ClipKey(record.speaker, record.emotion, record.level, record.sentence).head_pose_path(root)
    if not path.is_file():
        return None
    track = np.load(path)
    if track.ndim != 2 or track.shape[1] != 6 or not np.isfinite(track).all():
        raise ValueError(f"{path}: not a (T, 6) finite head pose track (shape {track.shape})")
    rows = np.round(np.arange(frames) * record.fps / fps).astype(int)
    if len(track) < rows[-1]:  # one row short is a rounding difference at the end, more is another clip or rate
        raise ValueError(f"{path}: {len(track)} rows, but the video's {frames} frames at {fps} frames/s need "
                         f"{rows[-1] + 1} at the corpus's {record.fps} frames/s")
    return track[np.minimum(rows, len(track) - 1), :3].astype(np.float32)


def pose_item(angles: np.ndarray | None, frame: int) -> dict[str, torch.Tensor]:
    if angles is None:
        return {"driving_pose": torch.zeros(3), "has_pose": torch.tensor(False)}
    return {"driving_pose": torch.from_numpy(angles[frame]), "has_pose": torch.tensor(True)}


class FramePairs(Dataset):
    """Random (source, driving) pairs of frames of one video: `pairs` items an epoch, drawn from (seed, index)."""

    def __init__(self, videos: list[np.ndarray], pairs: int, seed: int = 0,
                 angles: list[np.ndarray | None] | None = None) -> None:
        if not videos:
            raise ValueError("no videos to draw frame pairs from")
        self.videos, self.pairs, self.seed = videos, pairs, seed
        self.angles = angles or [None] * len(videos)
        self.epoch = 0

    def __len__(self) -> int:
        return self.pairs

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        which = int(rng.integers(len(self.videos)))
        video = self.videos[which]
        source, driving = rng.integers(len(video), size=2)
        return {"source": to_tensor(video[source]), "driving": to_tensor(video[driving]),
                **pose_item(self.angles[which], driving)}


class HeldOutPairs(Dataset):
    """Deterministic pairs for evaluation: each held-out frame driven from its video's source frame."""

    def __init__(self, sources: list[np.ndarray], targets: list[np.ndarray], stride: int = 1,
                 angles: list[np.ndarray | None] | None = None) -> None:
        self.items = [(i, t) for i, frames in enumerate(targets) for t in range(0, len(frames), stride)]
        self.sources, self.targets = sources, targets
        self.angles = angles or [None] * len(targets)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        video, frame = self.items[index]
        return {"source": to_tensor(self.sources[video]), "driving": to_tensor(self.targets[video][frame]),
                **pose_item(self.angles[video], frame)}


def to_tensor(frame: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float().div_(255.0)


class TalkingVideoDataModule(L.LightningDataModule):
    def __init__(self, corpus_dir: str, *, cache_dir: str, manifest: str | None = None, image_size: int = 256,
                 crop: str = "detect", fps: int = 25, speakers: Iterable[str] | None = None,
                 emotions: Iterable[str] | None = None, max_videos_per_speaker: int | None = None,
                 split_by: str = "speaker", val_speakers: Any = 1, test_speakers: Any = 1, split_seed: int = 0,
                 holdout_fraction: float = 0.25, eval_stride: int = 1, head_poses: bool = True,
                 pairs_per_epoch: int = 2000,
                 batch_size: int = 16, num_workers: int = 0, seed: int = 0, progress: bool = True) -> None:
        super().__init__()
        # Plain lists (Hydra passes ListConfig), so that checkpoints load with torch.load(weights_only=True).
        speakers, emotions, val_speakers, test_speakers = (
            list(v) if v is not None and not isinstance(v, (str, int)) else v
            for v in (speakers, emotions, val_speakers, test_speakers))
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        if split_by not in SPLIT_MODES:
            raise ValueError(f"split_by must be one of {SPLIT_MODES}, got {split_by!r}")
        if split_by == "frames" and not 0 < holdout_fraction < 1:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
        self.save_hyperparameters(logger=False)
        self.records: dict[str, list[ClipRecord]] = {}
        self.corpus_root: Path | None = None
        self.datasets: dict[str, Dataset] = {}

    # --- which videos ------------------------------------------------------------------------------------
    def _manifest(self) -> Manifest:
        hp = self.hparams
        if hp.manifest:
            return Manifest.load(hp.manifest)
        saved = Path(hp.corpus_dir) / "manifest.jsonl"
        if saved.is_file():
            return Manifest.load(saved)
        return scan_corpus(hp.corpus_dir, val_speakers=hp.val_speakers, test_speakers=hp.test_speakers,
                           seed=hp.split_seed, progress=hp.progress)

    def select(self) -> dict[str, list[ClipRecord]]:
        """split -> the records whose videos are used (every split holds all selected videos when split_by=frames)."""
        hp = self.hparams
        manifest = self._manifest()
        self.corpus_root = Path(manifest.root)
        records = with_videos(manifest)
        if hp.speakers is not None:
            records = [r for r in records if r.speaker in set(hp.speakers)]
        if hp.emotions is not None:
            records = [r for r in records if r.emotion in set(hp.emotions)]
        records.sort(key=lambda r: r.clip_id)
        if hp.max_videos_per_speaker is not None:
            per_speaker: dict[str, int] = {}
            kept = []
            for r in records:
                if per_speaker.get(r.speaker, 0) < hp.max_videos_per_speaker:
                    kept.append(r)
                    per_speaker[r.speaker] = per_speaker.get(r.speaker, 0) + 1
            records = kept
        if not records:
            raise ValueError(f"{manifest.root}: no talking videos match (speakers={hp.speakers}, emotions="
                             f"{hp.emotions}); render them with `dtl data demo --video` or check the layout "
                             "<ID>/video/<view>/<emotion>/level_<k>/<NNN>.mp4")
        if hp.split_by == "frames":
            return {"train": records, "val": records, "test": records}
        return {split: [r for r in records if r.split == split] for split in ("train", "val", "test")}

    def _cache(self) -> FrameCache:
        return FrameCache(self.hparams.cache_dir, self.hparams.image_size, self.hparams.crop, self.hparams.fps)

    def prepare_data(self) -> None:
        cache = self._cache()
        videos = sorted({r.video_path for split in self.select().values() for r in split})
        for video in tqdm(videos, desc="face crops", unit="video", disable=not self.hparams.progress):
            cache.load(video)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        self.records = self.select()
        cache = self._cache()
        frames = {split: [cache.load(r.video_path) for r in records] for split, records in self.records.items()}
        angles = {split: [load_head_angles(r, self.corpus_root, len(v), hp.fps) if hp.head_poses else None
                          for r, v in zip(self.records[split], frames[split])] for split in frames}
        if hp.split_by == "frames":
            cut = [max(1, int(round(len(v) * (1 - hp.holdout_fraction)))) for v in frames["train"]]
            train = [v[:c] for v, c in zip(frames["train"], cut)]
            held_out = [v[c:] for v, c in zip(frames["train"], cut)]
            if any(len(h) == 0 for h in held_out):
                raise ValueError("a video is too short to hold out frames; lower holdout_fraction or use longer videos")
            split_angles = [(a[:c], a[c:]) if a is not None else (None, None) for a, c in zip(angles["train"], cut)]
            self.datasets = {"train": FramePairs(train, hp.pairs_per_epoch, hp.seed, [a for a, _ in split_angles]),
                             "val": HeldOutPairs([v[0] for v in train], held_out, hp.eval_stride,
                                                 [a for _, a in split_angles])}
            self.datasets["test"] = self.datasets["val"]
            return
        self.datasets = {"train": FramePairs(frames["train"], hp.pairs_per_epoch, hp.seed, angles["train"])}
        for split in ("val", "test"):
            if frames[split]:
                self.datasets[split] = HeldOutPairs(
                    [v[0] for v in frames[split]], [v[1:] for v in frames[split]], hp.eval_stride,
                    [a[1:] if a is not None else None for a in angles[split]])

    # --- loaders -----------------------------------------------------------------------------------------
    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.datasets:
            raise ValueError(f"the {split} split has no videos (speakers held out for it have none)")
        return DataLoader(self.datasets[split], batch_size=self.hparams.batch_size, shuffle=shuffle,
                          num_workers=self.hparams.num_workers, drop_last=shuffle,
                          persistent_workers=self.hparams.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        self.datasets["train"].epoch = self.trainer.current_epoch if self.trainer else 0
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
