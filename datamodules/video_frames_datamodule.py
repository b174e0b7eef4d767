"""Face-cropped frames and 16 kHz audio of a corpus's videos, decoded once into a cache, served as emotion frames
(a CNN per frame) or audio-visual sync windows (Wav2Lip-style expert: 5 lower-half frames against 20 MFCC columns).

Each video gets one square face crop for all its frames: dlib's box found on a few evenly spaced frames, its median,
enlarged by `crop_scale` and resized to `size` pixels. The same function crops generated videos at evaluation time,
so a judge trained here sees evaluated videos exactly as it saw its training data.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from datamodules.corpus import scan_corpus
from dtl_foundation.atomic_files import atomic_save_npz
from datamodules.manifest import ClipRecord, Manifest
from dtl_foundation.mead import EMOTION_INDEX
from datamodules.split_loaders import SplitLoadersDataModule
from dtl_foundation.media.mfcc import MFCC_PER_FRAME, MFCC_WINDOW, WINDOW_FRAMES, syncnet_mfcc
from dtl_foundation.media.video_read import VideoReadError, read_audio_track, read_frames
from datamodules.demo.build import build_demo_corpus
from datamodules.demo.videos import render_demo_videos
from dtl_foundation.media.face_square import crop_square, median_face_box

log = logging.getLogger(__name__)
CACHE_VERSION = 1
MANIFEST_NAME = "video_manifest.jsonl"


# --- one video -> face crops --------------------------------------------------------------------------------------

@dataclass
class FaceVideo:
    """A video as the judges see it: face crops (T, S, S, 3) uint8 RGB at 25 fps, audio (N,) int16 mono 16 kHz."""

    frames: np.ndarray
    audio: np.ndarray
    box: tuple[float, float, float, float]


def load_face_video(path: str | os.PathLike, size: int = 64, crop_scale: float = 1.3, probes: int = 3,
                    upsample: int = 1, frames: np.ndarray | None = None, audio: np.ndarray | None = None) -> FaceVideo:
    """Decode (unless frames/audio are given) and face-crop one video; errors name the file."""
    frames = read_frames(path) if frames is None else frames
    audio = read_audio_track(path) if audio is None else audio
    box = median_face_box(frames, path, probes, upsample)
    return FaceVideo(crop_square(frames, box, size, crop_scale), audio, box)


class FaceVideoCache:
    """<cache_dir>/<sha1>.npz per (video file, its size and mtime, crop settings): decode and detect only once."""

    def __init__(self, cache_dir: str | os.PathLike, size: int = 64, crop_scale: float = 1.3, probes: int = 3,
                 upsample: int = 1) -> None:
        self.cache_dir = Path(cache_dir)
        self.size, self.crop_scale, self.probes, self.upsample = size, crop_scale, probes, upsample

    def path_for(self, video: str | os.PathLike) -> Path:
        video = Path(os.path.abspath(video))
        stat = video.stat()
        key = f"v{CACHE_VERSION}|{video}|{stat.st_size}|{stat.st_mtime_ns}|{self.size}|{self.crop_scale}|" \
              f"{self.probes}|{self.upsample}"
        return self.cache_dir / f"{hashlib.sha1(key.encode()).hexdigest()}.npz"

    def load(self, video: str | os.PathLike) -> FaceVideo:
        if not Path(video).is_file():
            raise VideoReadError(video, "no such file")
        cached = self.path_for(video)
        if cached.is_file():
            try:
                with np.load(cached) as data:
                    return FaceVideo(data["frames"], data["audio"], tuple(data["box"].tolist()))
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
                log.warning("%s: unreadable cache entry for %s (%s); decoding again", cached, video, e)
        face = load_face_video(video, self.size, self.crop_scale, self.probes, self.upsample)
        atomic_save_npz(cached, frames=face.frames, audio=face.audio, box=np.array(face.box))
        return face

    def fill(self, videos: Iterable[str], progress: bool = True) -> dict[str, Any]:
        """Decode every video not yet cached; returns counts and the failures (path: problem)."""
        videos = list(videos)
        report: dict[str, Any] = {"videos": len(videos), "decoded": 0, "cached": 0, "failed": {}}
        for video in tqdm(videos, desc="face crops", unit="video", disable=not progress):
            if self.path_for(video).is_file():
                report["cached"] += 1
                continue
            try:
                self.load(video)
                report["decoded"] += 1
            except VideoReadError as e:
                report["failed"][str(video)] = e.problem
        return report


# --- clips and datasets ---------------------------------------------------------------------------------------------

@dataclass
class FaceClip:
    clip_id: str
    speaker: str
    emotion: int
    frames: np.ndarray  # (T, S, S, 3) uint8
    mfcc: np.ndarray  # (13, M) float32, per-clip mean/variance normalised, 4 columns per frame


def normalised_mfcc(audio: np.ndarray) -> np.ndarray:
    """(13, M) SyncNet MFCC (100 Hz) with each coefficient's mean and variance over the clip normalised (CMVN)."""
    mfcc = syncnet_mfcc(audio)
    return ((mfcc - mfcc.mean(1, keepdims=True)) / (mfcc.std(1, keepdims=True) + 1e-5)).astype(np.float32)


def sync_window_count(clip: FaceClip) -> int:
    """Windows v whose 5 frames and 20 MFCC columns (4v .. 4v + 19) both exist."""
    return min(len(clip.frames) - WINDOW_FRAMES + 1, (clip.mfcc.shape[1] - MFCC_WINDOW) // MFCC_PER_FRAME + 1)


def as_image_tensor(frames: np.ndarray) -> torch.Tensor:
    """(..., S, S, 3) uint8 -> (..., 3, S, S) float in [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames))
    return tensor.movedim(-1, -3).float().div_(255)


def lower_half_window(frames: np.ndarray) -> torch.Tensor:
    """(5, S, S, 3) uint8 -> (15, S // 2, S) float: the lower halves stacked as channels t * 3 + c (Wav2Lip)."""
    size = frames.shape[1]
    images = as_image_tensor(frames[:, size // 2:])
    return images.flatten(0, 1)


def _randint(high: int) -> int:
    """A uniform draw from torch's generator, which Lightning seeds and gives each loader worker its own of."""
    return int(torch.randint(high, ()))


def augment_face(image: torch.Tensor, max_shift: int) -> torch.Tensor:
    """A random zoom (90-100 %) and shift, colour gains per channel, brightness and contrast, and one time in three
    gray: the demo speakers differ mostly in skin colour and proportions, which an emotion judge must ignore."""
    size = image.shape[-1]
    side = int(round(size * (0.9 + 0.1 * float(torch.rand(())))))
    top, left = _randint(size - side + 1), _randint(size - side + 1)
    image = F.interpolate(image[None, :, top:top + side, left:left + side], size=(size, size), mode="bilinear",
                          align_corners=False)[0]
    dx, dy = (_randint(2 * max_shift + 1) - max_shift for _ in range(2))
    image = torch.roll(image, shifts=(dy, dx), dims=(1, 2))
    image = image * (0.8 + 0.4 * torch.rand(3, 1, 1))
    mean = image.mean()
    image = (image - mean) * (0.7 + 0.6 * float(torch.rand(()))) + mean * (0.8 + 0.4 * float(torch.rand(())))
    if float(torch.rand(())) < 1 / 3:
        image = (image * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0, keepdim=True).expand(3, -1, -1)
    return image.clamp(0, 1)


class EmotionFrameDataset(Dataset):
    """Single face frames with their clip's emotion. Training draws `frames_per_clip` random frames per clip and epoch
    (augmented by `augment_face`); evaluation takes `frames_per_clip` evenly spaced frames."""

    def __init__(self, clips: list[FaceClip], train: bool, frames_per_clip: int = 8, max_shift: int = 3) -> None:
        self.clips, self.train, self.frames_per_clip, self.max_shift = clips, train, frames_per_clip, max_shift

    def __len__(self) -> int:
        return len(self.clips) * self.frames_per_clip

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip_index, k = divmod(index, self.frames_per_clip)
        clip = self.clips[clip_index]
        count = len(clip.frames)
        if self.train:
            frame = augment_face(as_image_tensor(clip.frames[_randint(count)]), self.max_shift)
        else:
            t = int(round(k * (count - 1) / max(self.frames_per_clip - 1, 1)))
            frame = as_image_tensor(clip.frames[t])
        return {"image": frame, "emotion": torch.tensor(clip.emotion), "clip": torch.tensor(clip_index)}


class SyncWindowDataset(Dataset):
    """5 lower-half face frames and 20 MFCC columns, in sync (label 1) or with the audio shifted (label 0).

    Training: `windows_per_clip` random windows per clip and epoch, half of them shifted by a random offset of at
    least `min_shift` frames (either direction, within the clip). Evaluation: every `eval_stride`-th window of each
    clip twice, in sync and shifted by exactly `eval_shift` frames (the other direction where the clip ends).
    """

    def __init__(self, clips: list[FaceClip], train: bool, windows_per_clip: int = 16, min_shift: int = 3,
                 eval_shift: int = 10, eval_stride: int = 4) -> None:
        self.clips, self.train = clips, train
        self.windows_per_clip, self.min_shift, self.eval_shift = windows_per_clip, min_shift, eval_shift
        self.items: list[tuple[int, int, int]] = []  # (clip, video window, audio window) for evaluation
        if not train:
            for c, clip in enumerate(clips):
                count = sync_window_count(clip)
                if count <= eval_shift:
                    continue
                for v in range(0, count, eval_stride):
                    shifted = v + eval_shift if v + eval_shift < count else v - eval_shift
                    self.items += [(c, v, v), (c, v, shifted)]

    def __len__(self) -> int:
        return len(self.clips) * self.windows_per_clip if self.train else len(self.items)

    def _draw(self, index: int) -> tuple[int, int, int]:
        c = index // self.windows_per_clip
        count = sync_window_count(self.clips[c])
        v = _randint(count)
        candidates = [a for a in range(count) if abs(a - v) >= self.min_shift]
        if float(torch.rand(())) < 0.5 or not candidates:
            return c, v, v
        return c, v, candidates[_randint(len(candidates))]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        c, v, a = self._draw(index) if self.train else self.items[index]
        clip = self.clips[c]
        return {"frames": lower_half_window(clip.frames[v:v + WINDOW_FRAMES]),
                "mfcc": torch.from_numpy(clip.mfcc[None, :, a * MFCC_PER_FRAME:a * MFCC_PER_FRAME + MFCC_WINDOW]),
                "label": torch.tensor(float(v == a)), "clip": torch.tensor(c)}


# --- the datamodule -------------------------------------------------------------------------------------------------

def select_records(records: list[ClipRecord], levels: Iterable[int] | None, sentences: int | None,
                   emotions: Iterable[str] | None) -> list[ClipRecord]:
    """Clips of the chosen levels (neutral, which MEAD has at level_1 only, always counts), emotions, and the first
    `sentences` sentence ids of each speaker."""
    levels = set(levels) if levels is not None else None
    emotions = set(emotions) if emotions is not None else None
    kept = [r for r in records
            if (levels is None or r.level in levels or r.emotion == "neutral")
            and (emotions is None or r.emotion in emotions)]
    if sentences is not None:
        first = {s: sorted({r.sentence for r in kept if r.speaker == s})[:sentences] for s in {r.speaker for r in kept}}
        kept = [r for r in kept if r.sentence in first[r.speaker]]
    return kept


class VideoFramesDataModule(SplitLoadersDataModule):
    """Face crops of a MEAD-layout corpus's videos, split by held-out speakers, for `task` "emotion" or "sync".

    prepare_data builds the demo corpus and renders its videos when asked (only the selected clips), scans the
    corpus into `<report_dir>/video_manifest.jsonl` and fills the face-crop cache; setup loads the clips.
    """

    def __init__(self, corpus_dir: str, cache_dir: str, report_dir: str, task: str = "emotion", size: int = 64,
                 crop_scale: float = 1.3, levels: list[int] | None = None, sentences: int | None = None,
                 emotions: list[str] | None = None, view: str = "front", build_demo: bool = False,
                 render_videos: bool = False, video_size: int = 128, demo_speakers: int = 6,
                 demo_sentences: int = 10, demo_seed: int = 0, val_speakers: Any = 1, test_speakers: Any = 1,
                 split_seed: int = 0, frames_per_clip: int = 8, eval_frames_per_clip: int = 8,
                 windows_per_clip: int = 16, min_shift: int = 3, eval_shift: int = 10, eval_stride: int = 4,
                 batch_size: int = 64, num_workers: int = 0) -> None:
        super().__init__()
        if task not in ("emotion", "sync"):
            raise ValueError(f"task must be 'emotion' or 'sync', not {task!r}")
        # plain Python lists (not OmegaConf's), so that checkpoints load with weights_only=True
        levels = [int(v) for v in levels] if levels is not None else None
        emotions = [str(v) for v in emotions] if emotions is not None else None
        val_speakers = val_speakers if isinstance(val_speakers, (int, str)) else [str(v) for v in val_speakers]
        test_speakers = test_speakers if isinstance(test_speakers, (int, str)) else [str(v) for v in test_speakers]
        self.save_hyperparameters(logger=False)
        self.corpus_dir = Path(corpus_dir)
        self.report_dir = Path(report_dir)
        self.cache = FaceVideoCache(cache_dir, size=size, crop_scale=crop_scale)
        self.datasets: dict[str, Dataset] = {}
        self.clips: dict[str, list[FaceClip]] = {}

    @property
    def manifest_path(self) -> Path:
        return self.report_dir / MANIFEST_NAME

    def _selected(self, manifest: Manifest) -> list[ClipRecord]:
        hp = self.hparams
        return select_records(manifest.records, hp.levels, hp.sentences, hp.emotions)

    def prepare_data(self) -> None:
        hp = self.hparams
        if hp.build_demo:
            build_demo_corpus(self.corpus_dir, speakers=hp.demo_speakers, sentences=hp.demo_sentences,
                              seed=hp.demo_seed)
        if hp.render_videos:
            everything = scan_corpus(self.corpus_dir, view=hp.view, val_speakers=0, test_speakers=0,
                                     on_error="skip", progress=False)
            wanted = [r.clip_id for r in self._selected(everything)]
            report = render_demo_videos(self.corpus_dir, size=hp.video_size, view=hp.view, seed=hp.demo_seed,
                                        clip_ids=wanted)
            if report["failed"]:
                raise RuntimeError(f"{self.corpus_dir}: {len(report['failed'])} demo videos failed to render, "
                                   f"first: {report['failed'][0]}")
        manifest = scan_corpus(self.corpus_dir, view=hp.view, val_speakers=hp.val_speakers,
                               test_speakers=hp.test_speakers, seed=hp.split_seed, on_error="skip",
                               report_path=self.report_dir / "scan_report.json")
        selected = self._selected(manifest)
        without = [r for r in selected if not r.video_path]
        if without:
            raise FileNotFoundError(
                f"{self.corpus_dir}: {len(without)} of {len(selected)} selected clips have no {hp.view} video, e.g. "
                f"{without[0].clip_id} (expected <ID>/video/{hp.view}/<emotion>/level_<k>/<NNN>.mp4); render the "
                f"demo corpus's videos with `dtl data demo --root {self.corpus_dir} --video` or set "
                f"data.render_videos=true")
        manifest.records = selected
        manifest.save(self.manifest_path)
        report = self.cache.fill([r.video_path for r in selected])
        if report["failed"]:
            first = next(iter(report["failed"].items()))
            raise RuntimeError(f"{len(report['failed'])} videos could not be face-cropped; first: {first[0]}: "
                               f"{first[1]}")

    def _clips(self, records: list[ClipRecord]) -> list[FaceClip]:
        clips = []
        for r in tqdm(records, desc="loading face crops", unit="clip", leave=False):
            face = self.cache.load(r.video_path)
            clips.append(FaceClip(r.clip_id, r.speaker, EMOTION_INDEX[r.emotion], face.frames,
                                  normalised_mfcc(face.audio) if self.hparams.task == "sync" else np.zeros((13, 0))))
        return clips

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        manifest = Manifest.load(self.manifest_path)
        self.clips = {name: self._clips(manifest.split(name)) for name in ("train", "val", "test")}
        if not self.clips["train"]:
            raise ValueError(f"{self.manifest_path}: no training clips with videos")
        for name, clips in self.clips.items():
            train = name == "train"
            if hp.task == "emotion":
                self.datasets[name] = EmotionFrameDataset(clips, train, hp.frames_per_clip if train
                                                          else hp.eval_frames_per_clip)
            else:
                self.datasets[name] = SyncWindowDataset(clips, train, hp.windows_per_clip, hp.min_shift,
                                                        hp.eval_shift, hp.eval_stride)
        log.info("video clips: %s", {k: len(v) for k, v in self.clips.items()})
