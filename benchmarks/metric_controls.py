"""Every metric's positive and negative control values (the table in docs/evaluation.md), measured with
`dtl eval --controls`' own code on real data:

1. portrait: skimage's astronaut, framed as a talking-head renderer frames a portrait (256 px), moved a few pixels
   per frame over a demo clip's speech, asked to look happy (she smiles): the "generated" video is the faithful
   animation; `--portrait` is the still.
2. reference: a rendered demo clip is its own reference; the generated video is a copy of it.
3. blendshapes: one demo speaker's ground-truth ARKit tracks against frozen, 15-frame-late, other-sentence and
   exaggerated-upper-face tracks (the controls of tests/test_metric_controls_blendshapes.py).

Groups whose standard weights are absent (SyncNet v2, FID Inception, LPIPS AlexNet) are listed as not computed,
never run on stand-in weights.

    .venv/bin/python benchmarks/metric_controls.py --corpus DEMO_CORPUS [--sample-frames 12]
        [--sync-expert CKPT] [--emotion-classifier CKPT]

DEMO_CORPUS: `dtl data demo --root DIR` then `dtl data videos DIR --per-speaker 2` (rendered videos).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.evaluate.command import evaluate
from experiments.evaluate.controls import animate, run_controls, write_clip
from experiments.evaluate.inputs import match_videos
from experiments.evaluate.scorers import METRIC_GROUPS, EvalOptions
from experiments.evaluate.report import controls_table
from dtl_foundation.media.face_detect import FaceLandmarker
from dtl_foundation.media.video_read import read_video


def portrait_square(size: int = 256) -> np.ndarray:
    """skimage's astronaut: a `size` px square of 2.2 x dlib's face box around the face."""
    from skimage import data

    image = data.astronaut()
    left, top, right, bottom = FaceLandmarker().detect(image).box
    cx, cy, side = (left + right) / 2, (top + bottom) / 2, 2.2 * max(right - left, bottom - top)
    box = (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
    return np.asarray(Image.fromarray(image).crop(box).resize((size, size), Image.Resampling.LANCZOS))


def scored_with_controls(generated: Path, reference: Path | None, options: EvalOptions, out: Path) -> dict:
    result = evaluate(generated, reference, options, progress=False)
    result["controls"] = run_controls(match_videos(generated, reference), out, options.portrait,
                                      lambda folder: evaluate(folder, reference, options, progress=False))
    return result


def blendshape_controls(corpus: Path) -> list[str]:
    """Mouth error, audio-mouth sync and upper-face dynamics deviation of the ground truth and its controls."""
    from experiments.evaluate.blendshape_controls import control_tracks
    from metrics.blendshape import AudioMouthSync, MouthError, UpperFaceDynamicsDeviation

    made = control_tracks(corpus)
    tracks, loudness, mask, controls = made["truth"], made["loudness"], made["mask"], made["controls"]
    lines = ["| metric | better | " + " | ".join(controls) + " |", "|---" * (2 + len(controls)) + "|"]
    rows = {"mouth_error": ("lower", lambda x: MouthError()), "sync": ("higher", lambda x: AudioMouthSync()),
            "upper_face_dd": ("lower", lambda x: UpperFaceDynamicsDeviation())}
    for name, (better, build) in rows.items():
        cells = []
        for control in controls.values():
            metric = build(None)
            if name == "sync":
                metric.update(control, loudness, mask)
                cells.append(f"{float(metric.compute()['sync']):.3f}")
            else:
                metric.update(control, tracks, mask)
                cells.append(f"{float(metric.compute()):.4f}")
        lines.append(f"| {name} | {better} | " + " | ".join(cells) + " |")
    return [f"{len(tracks)} clips of one speaker (level 3 and neutral), {tracks.shape[1]} frames", "", *lines]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="a demo corpus with rendered videos")
    parser.add_argument("--sample-frames", type=int, default=12)
    parser.add_argument("--sync-expert", type=Path)
    parser.add_argument("--emotion-classifier", type=Path)
    args = parser.parse_args(argv)
    videos = sorted(args.corpus.glob("*/video/front/*/level_*/*.mp4"))
    videos = [v for v in videos if v.parts[-2] == "level_3"] or videos  # the strongest expression
    if not videos:
        raise SystemExit(f"{args.corpus}: no rendered videos; run `dtl data videos {args.corpus} --per-speaker 2`")
    source = videos[0]
    start = time.perf_counter()
    print(f"# Metric controls\n\n{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus, torch {torch.__version__}; command: .venv/bin/python benchmarks/metric_controls.py "
          f"--corpus {args.corpus} --sample-frames {args.sample_frames}"
          + (f" --sync-expert {args.sync_expert}" if args.sync_expert else "")
          + (f" --emotion-classifier {args.emotion_classifier}" if args.emotion_classifier else "") + "\n")
    with tempfile.TemporaryDirectory(prefix="metric_controls_") as tmp:
        work = Path(tmp)
        clip = read_video(source)
        still = portrait_square()
        Image.fromarray(still).save(work / "portrait.png")
        generated = work / "portrait_video" / "astronaut_happy_level_3.mp4"  # she smiles
        write_clip(generated, animate(still, len(clip.frames), still.shape[:2]), clip.audio)
        portrait_options = EvalOptions(metrics=("identity", "emotion", "cpbd", "lse", "lse_expert"),
                                       portrait=work / "portrait.png", sample_frames=args.sample_frames,
                                       sync_expert=args.sync_expert)
        result = scored_with_controls(generated, None, portrait_options, work / "portrait_eval")
        print(f"## 1. Portrait: the astronaut animated over {source.relative_to(args.corpus)}'s speech "
              "(asked emotion: happy)\n")
        print("\n".join(controls_table(result)))
        print("".join(f"\nnot computed: {g}: {why.split('; expected')[0]}" for g, why in result["skipped"].items()))

        reference = work / "reference" / source.relative_to(args.corpus)
        reference.parent.mkdir(parents=True)
        shutil.copy(source, reference)
        copy = work / "generated" / source.relative_to(args.corpus)
        copy.parent.mkdir(parents=True)
        shutil.copy(source, copy)
        options = EvalOptions(metrics=METRIC_GROUPS, sample_frames=args.sample_frames, sync_expert=args.sync_expert,
                              emotion_classifier=args.emotion_classifier)
        result = scored_with_controls(work / "generated", work / "reference", options, work / "reference_eval")
        print(f"\n## 2. Reference: the rendered demo clip {source.relative_to(args.corpus)} "
              f"({clip.frames.shape[2]} px, {len(clip.frames)} frames) as its own reference\n")
        print("\n".join(controls_table(result)))
        print("".join(f"\nnot computed: {g}: {why.split('; expected')[0]}" for g, why in result["skipped"].items()))
    print("\n## 3. Blendshape metrics on the ground-truth tracks\n")
    print("\n".join(blendshape_controls(args.corpus)))
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
