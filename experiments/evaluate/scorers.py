"""The metric groups `dtl eval` runs on each decoded video pair, built from the project's metrics/ classes.

Each group scores one video at a time (`score` returns that video's numbers) except FID, a set-level distance
(`finish`). A group that cannot run (weights absent, no reference, no portrait) is not built: `build_scorers` returns
the reason instead, and the evaluation records it rather than any number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dtl_foundation.media.face_crop import crop_faces
from dtl_foundation.media.face_detect import FaceLandmarker
from dtl_foundation.media.video_read import VideoClip
from experiments.evaluate.inputs import VideoPair

# Each scorer imports its metric (and any lightning_modules model) when it is built: `dtl eval --metrics lse` loads
# SyncNet's dependencies, not those of FID, LPIPS, CPBD, FER or ArcFace (seconds each).
METRIC_GROUPS = ("lse", "lse_expert", "fid", "lpips", "psnr", "ssim", "cpbd", "identity", "emotion", "lmd")
# Each reported number and whether higher ("max") or lower ("min") is better: W&B summaries and the markdown table.
GOALS: dict[str, str] = {
    "lse_c": "max", "lse_d": "min", "lse_c_expert": "max", "lse_d_expert": "min", "fid": "min", "lpips": "min",
    "psnr": "max", "ssim": "max", "cpbd": "max", "identity_cosine": "max", "identity_distance": "min",
    "emotion_accuracy": "max", "emotion_confidence": "max", "m_lmd": "min", "f_lmd": "min",
    "identity_same_person": "max", "emotion_judge_confidence": "max", "lmd_fit_residual": "min",
}
CHUNK = 32  # frames per batch for the per-frame image metrics


@dataclass
class EvalOptions:
    """Everything the metric groups need besides the videos; see `dtl eval --help`."""

    metrics: tuple[str, ...] = METRIC_GROUPS
    portrait: Path | None = None
    syncnet_weights: Path | None = None
    sync_expert: Path | None = None
    emotion_classifier: Path | None = None
    fid_frames: int = 5
    sample_frames: int | None = None
    lpips_net: str = "alex"
    identity_backbone: str = "dlib"
    # ArcFace's same-person rule: cosine >= this (dlib's is built in: distance < 0.6)
    identity_threshold: float | None = None
    arcface_weights: Path | None = None
    arcface_sha256: str | None = None
    face_stride: int = 1
    device: str = "cpu"
    # Programmatic use only: networks that stand in for the registry's verified files (the metrics' own `weights`
    # argument); benchmarks pass seeded ones and say so.
    fid_weights: Any = "pretrained"
    lpips_weights: Any = "pretrained"


@dataclass
class DecodedPair:
    pair: VideoPair
    generated: VideoClip
    reference: VideoClip | None

    def aligned(self) -> tuple[np.ndarray, np.ndarray]:
        """Generated and reference frames cut to the shorter of the two (and the same size, or an error)."""
        assert self.reference is not None
        count = min(len(self.generated.frames), len(self.reference.frames))
        gen, ref = self.generated.frames[:count], self.reference.frames[:count]
        if gen.shape[1:] != ref.shape[1:]:
            raise ValueError(f"{self.pair.generated}: frames are {gen.shape[2]}x{gen.shape[1]} but its reference "
                             f"{self.pair.reference} has {ref.shape[2]}x{ref.shape[1]}; paired metrics need one size")
        return gen, ref


def sample_index(count: int, sample: int | None) -> np.ndarray:
    """All frame indices, or `sample` evenly spaced ones (round(linspace(0, count - 1, sample)))."""
    if not sample or sample >= count:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, sample).round().astype(int))


def video_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)


class Scorer:
    """One metric group: `score(item)` -> this video's numbers; `finish()` -> set-level numbers (FID).

    A group that scores only frames with a face sets `given` and `scored` (indices into the generated frames) in
    `score`, for experiments.evaluate.validity; the others score every frame they are given."""

    group = ""
    needs_reference = False
    given: np.ndarray | None = None
    scored: np.ndarray | None = None

    def score(self, item: DecodedPair) -> dict[str, float]:
        raise NotImplementedError

    def finish(self) -> dict[str, float]:
        return {}


class SyncNetScores(Scorer):
    """LSE-C / LSE-D / AV offset with SyncNet v2 on 224 px crops around dlib's face boxes (detected every
    `face_stride` frames and interpolated between), as dtl_foundation.media.face_crop reproduces syncnet_python's
    crops."""

    group = "lse"

    def __init__(self, net, face_stride: int, device: str) -> None:
        from metrics.syncnet import SyncNetScorer  # slow import; this metric group only

        self.scorer = SyncNetScorer(net).to(device)
        self.landmarker = FaceLandmarker(upsample=1)
        self.face_stride = face_stride

    def score(self, item: DecodedPair) -> dict[str, float]:
        frames = item.generated.frames
        boxes: list = [None] * len(frames)
        self.given = np.arange(0, len(frames), self.face_stride)
        for t in self.given:
            face = self.landmarker.detect(frames[t])
            boxes[t] = face.box if face is not None else None
        self.scored = np.array([t for t in self.given if boxes[t] is not None], dtype=int)
        if not len(self.scored):  # no face to crop: no number, and evaluate.validity says why
            return {"lse_c": math.nan, "lse_d": math.nan, "av_offset": math.nan}
        result = self.scorer.score(crop_faces(frames, boxes), item.generated.audio)
        return {"lse_c": result.lse_c, "lse_d": result.lse_d, "av_offset": float(result.offset)}


class SyncExpertScores(Scorer):
    """LSE-C / LSE-D / AV offset with a trained SyncNetExpert on its own face crops (distances of unit vectors)."""

    group = "lse_expert"

    def __init__(self, checkpoint: Path, device: str) -> None:
        from lightning_modules.syncnet_expert import SyncNetExpert  # slow import; this metric group only

        self.expert = SyncNetExpert.load_frozen(checkpoint).to(device)

    def score(self, item: DecodedPair) -> dict[str, float]:
        from datamodules.video_frames_datamodule import load_face_video  # slow import; this metric group only

        hp = self.expert.hparams
        face = load_face_video(item.pair.generated, hp.image_size, hp.crop_scale, frames=item.generated.frames,
                               audio=item.generated.audio)
        result = self.expert.sync_score(face.frames, face.audio)
        return {"lse_c_expert": result.lse_c, "lse_d_expert": result.lse_d, "av_offset_expert": float(result.offset)}


class FIDScores(Scorer):
    """FID between `frames` evenly spaced frames of every generated video and of every reference video."""

    group = "fid"
    needs_reference = True

    def __init__(self, frames: int, device: str, weights: Any = "pretrained") -> None:
        from metrics.fid import FrechetInceptionDistance  # slow import; this metric group only

        self.metric = FrechetInceptionDistance(weights, frames_per_video=frames).to(device)
        self.device = device

    def score(self, item: DecodedPair) -> dict[str, float]:
        assert item.reference is not None
        for frames, real in ((item.generated.frames, False), (item.reference.frames, True)):
            self.metric.update(video_tensor(frames)[None].to(self.device), real=real)
        return {}

    def finish(self) -> dict[str, float]:
        return {"fid": float(self.metric.compute())}


class PairedImageScores(Scorer):
    """Frame-by-frame LPIPS, PSNR or SSIM between a generated video and its reference (0-255 frames)."""

    needs_reference = True

    def __init__(self, group: str, lpips_net: str = "alex", device: str = "cpu", weights: Any = "pretrained") -> None:
        from metrics.image_quality import SSIM, psnr  # slow import; this metric group only
        from metrics.lpips_metric import LPIPS  # slow import; this metric group only

        self.group = group
        self.device = device
        builders = {"lpips": lambda: LPIPS(net=lpips_net, weights=weights, normalize=True),
                    "psnr": lambda: psnr(255.0), "ssim": lambda: SSIM(255.0)}
        self.metric = builders[group]().to(device)

    def score(self, item: DecodedPair) -> dict[str, float]:
        gen, ref = item.aligned()
        self.metric.reset()
        for start in range(0, len(gen), CHUNK):
            # float32: SSIM in float64 is ~10x slower on CPU, and 8-bit frames need no more precision than this
            preds = video_tensor(gen[start:start + CHUNK]).to(self.device, torch.float32)
            target = video_tensor(ref[start:start + CHUNK]).to(self.device, torch.float32)
            if self.group == "lpips":
                preds, target = preds / 255, target / 255
            self.metric.update(preds, target)
        return {self.group: float(self.metric.compute())}


class SharpnessScores(Scorer):
    group = "cpbd"

    def __init__(self, sample: int | None) -> None:
        from metrics.sharpness import CPBD  # slow import; this metric group only

        self.metric = CPBD()
        self.sample = sample

    def score(self, item: DecodedPair) -> dict[str, float]:
        frames = item.generated.frames
        self.metric.reset()
        self.metric.update(video_tensor(frames[sample_index(len(frames), self.sample)]))
        return {"cpbd": float(self.metric.compute())}
