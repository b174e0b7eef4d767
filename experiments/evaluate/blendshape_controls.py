"""Control tracks for the blendshape metrics, from a corpus's ground truth: one speaker's level-3 (and neutral)
ARKit tracks of one sentence with their speech loudness, and, made from them:

- faithful: the truth plus Gaussian noise of 0.005 (a near-perfect model)
- frozen: the first frame held
- late_15: the track 15 frames behind its speech
- other_sentence: the same speaker's tracks of another sentence (right face, wrong words)
- exaggerated_upper_face: brows, eyes and cheeks moving 3x as far from their mean
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from datamodules.tracks import corpus_npy_order, load_track, read_corpus_info
from datamodules.features import FeatureConfig, compute_features, frame_loudness_db
from dtl_foundation.arkit import indices
from dtl_foundation.mead import EMOTIONS
from dtl_foundation.media.audio import load_audio

LEVEL = "level_3"


def speaker_clips(corpus: Path, sentence: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """(B, T, 52) tracks, (B, T) loudness in dB, (B, T) mask and the emotions of the first speaker's level-3 clips
    (level 1 for neutral) of one sentence, cut to the shortest."""
    speaker = sorted(p for p in Path(corpus).iterdir() if (p / "arkit").is_dir())[0]
    cfg = FeatureConfig()
    order, _ = corpus_npy_order(corpus, read_corpus_info(corpus))
    tracks, loudness = [], []
    for emotion in EMOTIONS:
        level = "level_1" if emotion == "neutral" else LEVEL
        track, fps = load_track(speaker / "arkit" / emotion / level / f"{sentence}.npy", npy_order=order)
        wave = load_audio(speaker / "audio" / emotion / level / f"{sentence}.wav")
        tracks.append(track)
        loudness.append(frame_loudness_db(compute_features(wave, fps, cfg, num_frames=len(track)), cfg))
    length = min(len(t) for t in tracks)
    stack = torch.tensor(np.stack([t[:length] for t in tracks]), dtype=torch.float32)
    loud = torch.tensor(np.stack([x[:length] for x in loudness]), dtype=torch.float32)
    return stack, loud, torch.ones(stack.shape[:2], dtype=torch.bool), list(EMOTIONS)


def control_tracks(corpus: Path) -> dict:
    """The truth, its loudness, mask and emotions, and every control track (see the module's docstring)."""
    tracks, loudness, mask, emotions = speaker_clips(corpus, "001")
    other, _, _, _ = speaker_clips(corpus, "002")
    length = min(tracks.shape[1], other.shape[1])
    tracks, loudness, mask, other = tracks[:, :length], loudness[:, :length], mask[:, :length], other[:, :length]
    upper = indices("upper_face")
    exaggerated = tracks.clone()
    mean = tracks[..., upper].mean(1, keepdim=True)
    exaggerated[..., upper] = (mean + 3 * (tracks[..., upper] - mean)).clamp(0, 1)
    noise = torch.tensor(np.random.default_rng(0).normal(0, 0.005, tracks.shape), dtype=torch.float32)
    return {"loudness": loudness, "mask": mask, "emotions": emotions, "truth": tracks, "controls": {
        "faithful": (tracks + noise).clamp(0, 1),
        "frozen": tracks[:, :1].expand_as(tracks).clone(),
        "late_15": torch.cat([tracks[:, :1].expand(-1, 15, -1), tracks[:, :-15]], dim=1),
        "other_sentence": other,
        "exaggerated_upper_face": exaggerated}}
