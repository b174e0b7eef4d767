"""`dtl generate blendshapes`: audio + emotion (label and level, and optionally a style clip) -> Live Link Face CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dtl_foundation.arkit import LiveLinkTrack, write_live_link_csv
from dtl_foundation.media.audio import check_not_silent, load_audio
from datamodules.blendshape_datamodule import resample_track
from datamodules.tracks import load_track
from datamodules.features import compute_features
from dtl_foundation.mead import EMOTION_INDEX, EMOTIONS, levels_of
from lightning_modules.trained_model import TrainedModel, load_trained_model


def emotion_condition(emotion: str, level: int) -> tuple[int, int]:
    if emotion not in EMOTION_INDEX:
        raise ValueError(f"unknown emotion {emotion!r}; known: {', '.join(EMOTIONS)}")
    if level not in levels_of(emotion):
        raise ValueError(f"emotion {emotion!r} has levels {list(levels_of(emotion))}, not {level}")
    return EMOTION_INDEX[emotion], level


def generate_blendshapes(trained: TrainedModel, audio_path: Path, emotion: str, level: int, *,
                         style_path: Path | None = None, steps: int | None = None, guidance: float | None = None,
                         seed: int = 0, refiner: TrainedModel | None = None) -> np.ndarray:
    """(T, 52) blendshapes at the model's frame rate for one audio file; lip-refined when a refiner is given."""
    emotion_index, level = emotion_condition(emotion, level)
    wave = load_audio(audio_path, trained.features.sample_rate)
    check_not_silent(wave, audio_path)
    features = compute_features(wave, trained.fps, trained.features)
    audio = (features - trained.audio_mean) / trained.audio_std
    model = trained.model
    style_frames = int(trained.cfg.data.style_frames)
    style = torch.zeros(1, style_frames, 52)
    style_mask = torch.zeros(1, style_frames, dtype=torch.bool)
    init = model.denormalize(torch.zeros(1, 52))  # the corpus mean expression
    if style_path is not None:
        track, track_fps = load_track(style_path, csv_fps=60.0, npy_fps=trained.fps)
        track = resample_track(track, track_fps, trained.fps) if track_fps != trained.fps else track
        n = min(len(track), style_frames)
        style[0, :n] = torch.from_numpy(track[:n])
        style_mask[0, :n] = True
        init = torch.from_numpy(track[:1])
    device = next(model.parameters()).device
    batch = {"audio": torch.from_numpy(audio)[None], "style": style, "style_mask": style_mask,
             "emotion": torch.tensor([emotion_index]), "level": torch.tensor([level]), "init": init}
    batch = {k: v.to(device) for k, v in batch.items()}
    generator = torch.Generator(device=device).manual_seed(seed)
    track = model.generate(batch, steps=steps, guidance_scale=guidance, generator=generator)
    if refiner is not None:
        if refiner.features != trained.features or not np.allclose(refiner.audio_mean, trained.audio_mean, atol=1e-4):
            raise ValueError(f"{refiner.checkpoint}: the lip refiner was trained on other audio features than "
                             f"{trained.checkpoint}")
        with torch.no_grad():
            track = refiner.model.refine(track, batch["audio"], torch.ones(track.shape[:2], dtype=torch.bool,
                                                                             device=device))
    return track[0].cpu().numpy()


def cmd_blendshapes(ns: argparse.Namespace) -> int:
    trained = load_trained_model(ns.checkpoint, ns.device)
    refiner = load_trained_model(ns.refiner, ns.device) if ns.refiner else None
    audio_files = [Path(a) for a in ns.audio]
    if ns.audio_list:
        audio_files += [Path(line.strip()) for line in Path(ns.audio_list).read_text().splitlines() if line.strip()]
    out_dir = Path(ns.out)
    failures = 0
    for audio_path in tqdm(audio_files, desc="generating", unit="file", disable=len(audio_files) < 2):
        try:
            track = generate_blendshapes(trained, audio_path, ns.emotion, ns.level,
                                         style_path=Path(ns.style) if ns.style else None, steps=ns.steps,
                                         guidance=ns.guidance, seed=ns.seed, refiner=refiner)
        except ValueError as e:  # bad input for this file: report and go on with the others
            print(f"dtl generate: {e}", file=sys.stderr)
            failures += 1
            continue
        if ns.fps != trained.fps:
            track = resample_track(track, trained.fps, ns.fps)
        out = out_dir / f"{audio_path.stem}_{ns.emotion}_level_{ns.level}.csv"
        write_live_link_csv(out, LiveLinkTrack(blendshapes=track, fps=ns.fps))
        print(f"{audio_path} -> {out} ({len(track)} frames at {ns.fps:g} fps)")
    return 1 if failures else 0


def add_parser(sub) -> None:
    bs = sub.add_parser("blendshapes", help="ARKit Live Link Face CSV for MetaHuman, Unreal or Blender")
    bs.add_argument("--checkpoint", required=True, help="an EmoDiff run directory or checkpoint")
    bs.add_argument("--refiner", help="a lip-refinement run directory or checkpoint applied to EmoDiff's output")
    bs.add_argument("--audio", nargs="*", default=[], help="audio files (wav, flac, m4a, mp3)")
    bs.add_argument("--audio-list", help="a text file with one audio path a line")
    bs.add_argument("--emotion", required=True, choices=EMOTIONS)
    bs.add_argument("--level", type=int, default=3)
    bs.add_argument("--style", help="a reference expression clip (.npy or Live Link CSV) of any content")
    bs.add_argument("--fps", type=float, default=30.0, choices=[25.0, 30.0, 60.0])
    bs.add_argument("--steps", type=int, default=None, help="DDIM steps (0 = full DDPM; default: the model's)")
    bs.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    bs.add_argument("--seed", type=int, default=0)
    bs.add_argument("--device", default="cpu")
    bs.add_argument("--out", default="generated")
    bs.set_defaults(func=cmd_blendshapes)
