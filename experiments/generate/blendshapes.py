"""`dtl generate blendshapes`: audio + emotion (a label at a level or intensity, a mixture or a schedule; the style
from the checkpoint's bank or a reference clip) -> Live Link Face CSV and its request metadata (JSON beside it)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from datamodules.blendshape_datamodule import resample_track
from datamodules.features import compute_features
from datamodules.tracks import load_track
from dtl_foundation.arkit_live_link import FRAME_RATES, LiveLinkTrack, write_live_link_csv
from dtl_foundation.atomic_files import atomic_write_text
from dtl_foundation.media.audio import check_not_silent, load_audio
from dtl_foundation.mead import EMOTION_INDEX
from experiments.generate.take_files import audio_inputs, input_stems, take_finished
from dtl_foundation.diffusion import SAMPLERS
from lightning_modules.emotion_requests import (EmotionMix, mix_vector, parse_emotion, read_emotion_schedule,
                                                schedule_vectors)
from lightning_modules.networks.emodiff_generator import STYLE_SOURCES
from lightning_modules.trained_model import TrainedModel, load_trained_model

DEFAULT_STYLE_FROM = "bank"
"""Requests without a reference clip take their style from the checkpoint's style bank: on held-out speakers
as good as the label alone once the label path is trained, better where it is weak (benchmarks/README.md)."""


def style_source(style_from: str | None, style_path: Path | None, generator=None, mixes=(),
                 warn: bool = True) -> str:
    """The style source a request uses: as asked, else the reference clip when one is given, else the bank;
    by default (not when asked for) the label alone where the bank lacks an (emotion, level) of `mixes`."""
    source = style_from or ("clip" if style_path is not None else DEFAULT_STYLE_FROM)
    if source not in STYLE_SOURCES:
        raise ValueError(f"style_from must be one of {', '.join(STYLE_SOURCES)}, not {source!r}")
    if source == "clip" and style_path is None:
        raise ValueError("--style-from clip needs a reference clip (--style FILE)")
    if style_from is None and source == "bank" and generator is not None:
        missing = sorted({(e, lv) for mix in mixes for e, lv, _ in mix.parts
                          if generator.bank_count[EMOTION_INDEX[e], lv] == 0})
        if missing and warn:
            print(f"dtl generate: the checkpoint's style bank has no {missing}; using the label alone",
                  file=sys.stderr)
        if missing:
            return "label"
    return source


def request_mixes(emotion: str | None, level: int, intensity: float | None,
                  schedule_path: Path | None) -> list[tuple[float, EmotionMix]]:
    """The request as (start second, mixture) pairs: one from 0 s, or the schedule file's."""
    if schedule_path is not None:
        return read_emotion_schedule(schedule_path, level)
    if emotion is None:
        raise ValueError("give --emotion (an emotion or a mixture) or --emotion-schedule FILE")
    return [(0.0, parse_emotion(emotion, level, intensity))]


def generate_blendshapes(trained: TrainedModel, audio_path: Path, emotion: str | None, level: int, *,
                         style_path: Path | None = None, steps: int | None = None, guidance: float | None = None,
                         seed: int = 0, refiner: TrainedModel | None = None, style_from: str | None = None,
                         intensity: float | None = None, schedule_path: Path | None = None,
                         sampler: str | None = None) -> np.ndarray:
    """(T, 52) blendshapes at the model's frame rate for one audio file; lip-refined when a refiner is given.
    `sampler` and `steps` default to the model's.

    `emotion` is a name or a mixture (`happy:0.6,surprised:0.4`) at `level`, or at a continuous `intensity`;
    `schedule_path` changes it over time instead. The style term comes from `style_from` (see style_source)."""
    schedule = request_mixes(emotion, level, intensity, schedule_path)
    source = style_source(style_from, style_path, trained.model, [mix for _, mix in schedule])
    wave = load_audio(audio_path, trained.features.sample_rate)
    check_not_silent(wave, audio_path)
    features = compute_features(wave, trained.fps, trained.features)
    audio = (features - trained.audio_mean) / trained.audio_std
    generator = trained.model
    device = generator.bs_mean.device
    style_frames = int(trained.cfg.data.style_frames)
    style = torch.zeros(1, style_frames, 52, device=device)
    style_mask = torch.zeros(1, style_frames, dtype=torch.bool, device=device)
    init = generator.denormalize(torch.zeros(1, 52, device=device))  # unused while init_known is False
    init_known = torch.zeros(1, dtype=torch.bool, device=device)
    if source == "clip":
        track, track_fps = load_track(style_path, csv_fps=60.0, npy_fps=trained.fps)
        track = resample_track(track, track_fps, trained.fps) if track_fps != trained.fps else track
        n = min(len(track), style_frames)
        style[0, :n] = torch.from_numpy(track[:n]).to(device)
        style_mask[0, :n] = True
        init, init_known = torch.from_numpy(track[:1]).to(device), ~init_known
    options = dict(style_from=source, style=style, style_mask=style_mask)
    frames = len(audio)
    vector = (schedule_vectors(generator, schedule, frames, trained.fps, **options) if len(schedule) > 1
              else mix_vector(generator, schedule[0][1], **options))
    batch = {"audio": torch.from_numpy(audio)[None].to(device), "init": init, "init_known": init_known,
             "emotion_vector": vector}
    rng = torch.Generator(device=device).manual_seed(seed)
    with torch.inference_mode():
        track = generator.generate(batch, steps=steps, guidance_scale=guidance, generator=rng, sampler=sampler)
    if refiner is not None:
        if refiner.features != trained.features or not np.allclose(refiner.audio_mean, trained.audio_mean, atol=1e-4):
            raise ValueError(f"{refiner.checkpoint}: the lip refiner was trained on other audio features than "
                             f"{trained.checkpoint}")
        with torch.inference_mode():
            track = refiner.model.refine(track, batch["audio"], torch.ones(track.shape[:2], dtype=torch.bool,
                                                                             device=device))
    return track[0].cpu().numpy()


def request_metadata(trained: TrainedModel, ns: argparse.Namespace, audio_path: Path) -> dict:
    """What produced a take, written beside its CSV (Live Link CSVs have no room for it)."""
    style_path = Path(ns.style) if ns.style else None
    schedule = request_mixes(ns.emotion, ns.level, ns.intensity,
                             Path(ns.emotion_schedule) if ns.emotion_schedule else None)
    return {"audio": str(audio_path), "checkpoint": str(trained.checkpoint), "emotion": ns.emotion,
            "level": ns.level, "intensity": ns.intensity, "emotion_schedule": ns.emotion_schedule,
            "resolved_emotion": " then ".join(f"{mix.describe()} from {t:g} s" for t, mix in schedule),
            "style_from": style_source(ns.style_from, style_path, trained.model,
                                       [mix for _, mix in schedule], warn=False), "style": ns.style,
            "guidance": ns.guidance if ns.guidance is not None else trained.model.guidance_scale,
            "sampler": sampler_used(trained, ns),
            "steps": ns.steps if ns.steps is not None else trained.model.sample_steps, "seed": ns.seed}


def metadata_path(csv_path: Path) -> Path:
    return csv_path.with_suffix(".json")


def sampler_used(trained: TrainedModel, ns: argparse.Namespace) -> str:
    """The sampler a take ran: --steps 0 is full DDPM whatever the sampler, else --sampler or the model's."""
    if ns.steps == 0 or (ns.steps is None and trained.model.sample_steps == 0):
        return "ddpm"
    return ns.sampler or trained.model.sampler


def write_metadata(csv_path: Path, metadata: dict) -> Path:
    """Written after the take's other files: its presence marks the take finished (take_finished)."""
    path = metadata_path(csv_path)
    atomic_write_text(path, json.dumps(metadata, indent=1) + "\n")
    return path


def emotion_argument(text: str) -> str:
    try:
        parse_emotion(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def add_emotion_arguments(parser: argparse.ArgumentParser) -> None:
    """--emotion, --level, --intensity, --emotion-schedule, --style, --style-from: shared by blendshapes and video."""
    parser.add_argument("--emotion", type=emotion_argument, nargs="+",
                        help="an emotion, or a mixture such as happy:0.6,surprised:0.4 (or --emotion-schedule); "
                             "several (happy sad surprised) give a take each, the models loaded once")
    parser.add_argument("--level", type=int, default=3, help="intensity level 1-3 (neutral has 1 only)")
    parser.add_argument("--intensity", type=float, default=None,
                        help="continuous intensity 0 (neutral) .. 1 (top level), instead of --level")
    parser.add_argument("--emotion-schedule", help="a file of `SECONDS EMOTION` lines: the emotion over time")
    parser.add_argument("--style", help="a reference expression clip (.npy or Live Link CSV) of any content")
    parser.add_argument("--style-from", choices=STYLE_SOURCES, default=None,
                        help=f"the style term: the checkpoint's style bank, none (label), or --style's clip "
                             f"(default: clip when --style is given, else {DEFAULT_STYLE_FROM})")


def emotion_takes(ns: argparse.Namespace) -> list[argparse.Namespace]:
    """One request per emotion of `--emotion happy sad ...` (each with that one emotion); ValueError if one is asked
    twice (both takes would have one name)."""
    emotions = ns.emotion if isinstance(ns.emotion, list) else [ns.emotion]
    repeated = sorted({e for e in emotions if emotions.count(e) > 1})
    if repeated:
        raise ValueError(f"--emotion asks for {', '.join(repeated)} more than once")
    return [argparse.Namespace(**{**vars(ns), "emotion": emotion}) for emotion in emotions]


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """--sampler, --steps, --guidance, --seed: shared by blendshapes and video."""
    parser.add_argument("--sampler", choices=SAMPLERS, default=None,
                        help="the diffusion sampler (default: the model's; benchmarks/README.md compares them)")
    parser.add_argument("--steps", type=int, default=None,
                        help="the sampler's timesteps (0 = full DDPM; default: the model's)")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    parser.add_argument("--seed", type=int, default=0)


def take_name(ns: argparse.Namespace) -> str:
    """<emotion>_level_<L> (or _intensity_<x>, or _schedule) for a take's file names; mixtures joined by '+'."""
    if ns.emotion_schedule:
        return f"{Path(ns.emotion_schedule).stem}_schedule"
    emotion = "+".join(part.partition(":")[0] for part in ns.emotion.split(","))
    return f"{emotion}_intensity_{ns.intensity:g}" if ns.intensity is not None else f"{emotion}_level_{ns.level}"


def cmd_blendshapes(ns: argparse.Namespace) -> int:
    audio_files = audio_inputs(ns)
    try:
        stems = input_stems(audio_files)
        takes = emotion_takes(ns)
    except ValueError as e:
        print(f"dtl generate: {e}", file=sys.stderr)
        return 2
    trained = load_trained_model(ns.checkpoint, ns.device)
    refiner = load_trained_model(ns.refiner, ns.device) if ns.refiner else None
    out_dir = Path(ns.out)
    failures = 0
    jobs = [(audio_path, stem, take) for audio_path, stem in zip(audio_files, stems) for take in takes]
    for audio_path, stem, take in tqdm(jobs, desc="generating", unit="take", disable=len(jobs) < 2):
        out = out_dir / f"{stem}_{take_name(take)}.csv"
        try:
            if take.skip_existing and take_finished(metadata_path(out), request_metadata(trained, take, audio_path)):
                print(f"{audio_path}: {out} is already there (--skip-existing)")
                continue
            track = generate_blendshapes(trained, audio_path, take.emotion, take.level,
                                         style_path=Path(take.style) if take.style else None, steps=take.steps,
                                         guidance=take.guidance, seed=take.seed, refiner=refiner,
                                         style_from=take.style_from, intensity=take.intensity,
                                         schedule_path=Path(take.emotion_schedule) if take.emotion_schedule else None,
                                         sampler=take.sampler)
        except (ValueError, FileNotFoundError) as e:  # bad input for this file: report, go on with the others
            print(f"dtl generate: {e}", file=sys.stderr)
            failures += 1
            continue
        if take.fps != trained.fps:
            track = resample_track(track, trained.fps, take.fps)
        write_live_link_csv(out, LiveLinkTrack(blendshapes=track, fps=take.fps))
        write_metadata(out, request_metadata(trained, take, audio_path))
        print(f"{audio_path} -> {out} ({len(track)} frames at {take.fps:g} fps)")
    return 1 if failures else 0


def add_parser(sub) -> None:
    bs = sub.add_parser("blendshapes", help="ARKit Live Link Face CSV for MetaHuman, Unreal or Blender")
    bs.add_argument("--checkpoint", required=True, help="an EmoDiff run directory or checkpoint")
    bs.add_argument("--refiner", help="a lip-refinement run directory or checkpoint applied to EmoDiff's output")
    bs.add_argument("--audio", nargs="*", default=[], help="audio files (wav, flac, m4a, mp3)")
    bs.add_argument("--audio-list", help="a text file with one audio path a line")
    add_emotion_arguments(bs)
    bs.add_argument("--fps", type=float, default=30.0, choices=FRAME_RATES,
                    help="frame rate of the CSV and its timecodes (default 30)")
    add_sampling_arguments(bs)
    bs.add_argument("--device", default="cpu")
    bs.add_argument("--out", default="generated")
    add_skip_existing_argument(bs)
    bs.set_defaults(func=cmd_blendshapes)


def add_skip_existing_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--skip-existing", action="store_true",
                        help="leave takes an earlier run of the same request finished (their JSON is there) alone")
