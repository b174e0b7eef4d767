"""Which metric groups `dtl eval` can build for the options it was given, and why the others are skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dtl_foundation.weights import WeightsError
from experiments.evaluate.face_scorers import EmotionScores, IdentityScores, LandmarkScores
from experiments.evaluate.scorers import (METRIC_GROUPS, EvalOptions, FIDScores, PairedImageScores, Scorer,
                                          SharpnessScores, SyncExpertScores, SyncNetScores)


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
        from metrics.syncnet import load_syncnet, pretrained_syncnet  # slow import; this metric group only

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
