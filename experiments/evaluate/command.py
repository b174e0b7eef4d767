"""`dtl eval GENERATED [--reference REF] ...`: score a folder of generated videos (against references matched by
relative path or clip id), or first generate a trained run's test split into it (`--checkpoint`), with LSE-C/LSE-D,
FID, LPIPS, PSNR/SSIM, CPBD, identity, emotion accuracy and M-LMD/F-LMD; write metrics.json, per_video.csv and
metrics.md, and log a W&B run with job_type=eval."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dtl_foundation.directory_lock import DirectoryHeld, hold_directory
from dtl_foundation.media.video_read import VideoReadError, read_video
from experiments.evaluate.controls import run_controls
from experiments.evaluate.inputs import EvaluationInputError, VideoPair, match_videos
from experiments.evaluate.report import log_to_wandb, write_outputs
from experiments.evaluate.scorer_plan import build_scorers
from experiments.evaluate.scorers import METRIC_GROUPS, DecodedPair, EvalOptions, sample_index
from experiments.evaluate.validity import (
    as_json,
    check_video,
    not_valid_numbers,
    scorer_validity,
    set_validity,
)


def evaluate(generated: str | Path, reference: str | Path | None = None, options: EvalOptions | None = None,
             on_error: str = "fail", progress: bool = True) -> dict[str, Any]:
    """The evaluation's result: mean metrics over videos (FID over the set), per-video rows, skipped groups with their
    reasons, and the seconds each group took (decoding counted apart)."""
    options = options or EvalOptions()
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', not {on_error!r}")
    pairs = match_videos(generated, reference)
    plan = build_scorers(options, has_reference=reference is not None,
                         any_emotion=any(p.emotion is not None for p in pairs))
    seconds: dict[str, float] = defaultdict(float)
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    face_check = _face_check(options, plan.notes)
    validity, checks = {}, {}
    for pair in tqdm(pairs, desc="dtl eval", unit="video", disable=not progress):
        row: dict[str, Any] = {"video": pair.name, "generated": str(pair.generated),
                               "reference": str(pair.reference) if pair.reference else "",
                               "emotion": pair.emotion or ""}
        try:
            start = time.perf_counter()
            item = _decode(pair)
            seconds["decode"] += time.perf_counter() - start
            check, verdicts = None, {}
            if face_check is not None:
                start = time.perf_counter()
                frames = item.generated.frames
                check = check_video(face_check, frames, sample_index(len(frames), options.sample_frames))
                seconds["face_check"] += time.perf_counter() - start
            for scorer in plan.scorers:
                start = time.perf_counter()
                try:
                    row.update(scorer.score(item))
                except ValueError as e:
                    if isinstance(e, VideoReadError) or str(e).startswith(str(pair.generated)):
                        raise
                    raise ValueError(f"{pair.generated}: {scorer.group}: {e}") from e
                seconds[scorer.group] += time.perf_counter() - start
                verdicts[scorer.group] = scorer_validity(scorer, check)
        except (VideoReadError, ValueError) as e:
            if on_error == "fail":
                raise
            failed[str(pair.generated)] = str(e)
            continue
        row.update({f"{group}_valid": verdict.valid for group, verdict in verdicts.items()})
        rows.append(row)
        validity[pair.name] = verdicts
        if check is not None:
            checks[pair.name] = check.summary()
    metrics, counts = _means(rows)
    for scorer in plan.scorers:
        start = time.perf_counter()
        finished = scorer.finish()
        seconds[scorer.group] += time.perf_counter() - start
        metrics.update(finished)
        counts.update({k: len(rows) for k in finished})
    result = {"generated": str(generated), "reference": str(reference) if reference is not None else None,
            "metrics": metrics, "counts": counts, "per_video": rows, "skipped": plan.skipped, "notes": plan.notes,
            "validity": as_json(validity, {s.group: set_validity(validity, s.group) for s in plan.scorers}, checks),
            "failed": failed, "seconds": dict(seconds), "options": _options_dict(options)}
    result["not_valid"] = not_valid_numbers(result)
    return result


def _face_check(options: EvalOptions, notes: dict[str, str]):
    """metrics.face_check's FaceCheck, or None (and a note) when facenet-pytorch is not installed."""
    from metrics.face_check import MIN_FACE_DETAIL, MIN_IOU, MIN_MTCNN_PROBABILITY, FaceCheck  # facenet-pytorch

    try:
        check = FaceCheck(device=options.device)
    except ImportError as e:
        notes["face_check"] = f"not done: {e}"
        return None
    notes["face_check"] = (f"dlib's face confirmed by facenet-pytorch's MTCNN (probability >= "
                           f"{MIN_MTCNN_PROBABILITY}, IoU >= {MIN_IOU}) and face detail >= {MIN_FACE_DETAIL}, on "
                           "the frames the face metrics score")
    return check


def _decode(pair: VideoPair) -> DecodedPair:
    return DecodedPair(pair, read_video(pair.generated), read_video(pair.reference) if pair.reference else None)


def _means(rows: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, int]]:
    """Mean of each numeric column over the videos that have a number (NaN: not scorable for that video)."""
    values: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float):
                values[key].append(value)
    metrics, counts = {}, {}
    for key, column in values.items():
        scored = [v for v in column if not math.isnan(v)]
        metrics[key] = float(np.mean(scored)) if scored else math.nan
        counts[key] = len(scored)
    return metrics, counts


def _options_dict(options: EvalOptions) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple):
            return list(value)
        return value if value is None or isinstance(value, (str, int, float, bool)) else type(value).__name__

    return {k: plain(v) for k, v in vars(options).items()}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dtl eval", description=__doc__)
    parser.add_argument("generated", type=Path, help="a generated video or a folder of them (searched recursively); "
                        "with --checkpoint, the folder to generate into")
    generation = parser.add_argument_group(
        "generate, then evaluate", "with --checkpoint: generate every clip of the run's split that has a reference "
        "video (portrait: its first frame; the clip's speech, emotion and level) into GENERATED/videos, keeping "
        "videos an earlier call wrote, then score them against the corpus's videos")
    generation.add_argument("--checkpoint", type=Path, help="an EmoDiff run directory or checkpoint")
    generation.add_argument("--renderer", help="`warp` (the default: the training-free warp renderer) or a "
                            "face-vid2vid run directory or checkpoint")
    generation.add_argument("--refiner", type=Path, help="a lip-refinement run directory or checkpoint")
    generation.add_argument("--split", default="test", choices=("train", "val", "test"))
    generation.add_argument("--limit", type=int, help="the first N clips of the split only")
    generation.add_argument("--steps", type=int, help="the sampler's timesteps (default: the model's)")
    generation.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's)")
    generation.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", type=Path, help="folder of reference videos, matched by relative path or "
                        "clip id (<ID>/video/<view>/<emotion>/level_<k>/<NNN>.mp4 -> <ID>_<emotion>_level_<k>_<NNN>)")
    parser.add_argument("--portrait", type=Path, help="the identity image (default: each reference's first frame)")
    parser.add_argument("--metrics", nargs="+", default=list(METRIC_GROUPS), choices=METRIC_GROUPS,
                        metavar="METRIC", help=f"metric groups to run (default: all): {' '.join(METRIC_GROUPS)}")
    parser.add_argument("--out", type=Path, help="output folder (default: GENERATED/../eval_<name>)")
    parser.add_argument("--group", help="W&B group, e.g. the training run's experiment name")
    parser.add_argument("--project", help="W&B project (default: $WANDB_PROJECT or dreamtalk-lab)")
    parser.add_argument("--name", help="W&B run name")
    parser.add_argument("--no-wandb", action="store_true", help="write the files only")
    parser.add_argument("--syncnet-weights", type=Path,
                        help="a syncnet_v2.model state dict to use instead of the registry's verified file")
    parser.add_argument("--sync-expert", type=Path, help="a trained SyncNetExpert checkpoint (metrics lse_expert)")
    parser.add_argument("--emotion-classifier", type=Path,
                        help="a trained VideoEmotionClassifier checkpoint as the emotion judge (default: FER2013)")
    parser.add_argument("--fid-frames", type=int, default=5, help="frames per video for FID (default 5)")
    parser.add_argument("--sample-frames", type=int, default=None,
                        help="evenly spaced frames per video for CPBD, identity, emotion and landmarks (default: all)")
    parser.add_argument("--face-stride", type=int, default=1,
                        help="detect the face every N frames for SyncNet's crops, interpolating between (default 1)")
    parser.add_argument("--lpips-net", default="alex", choices=("alex", "vgg"))
    parser.add_argument("--identity-backbone", default="dlib", choices=("dlib", "arcface"))
    parser.add_argument("--arcface-weights", type=Path)
    parser.add_argument("--arcface-sha256")
    parser.add_argument("--identity-threshold", type=float,
                        help="ArcFace's same-person rule: cosine >= this (dlib's is built in: distance < 0.6)")
    parser.add_argument("--device", default="cpu", help="torch device for SyncNet, FID, LPIPS and the trained judges")
    parser.add_argument("--controls", action="store_true",
                        help="also write control videos made from the first reference (or the portrait) - faithful, "
                        "blob, another person, frozen, speech 5 and 15 frames late, noisy - to OUT/controls and score "
                        "them with the same options, beside your videos")
    parser.add_argument("--on-error", default="fail", choices=("fail", "skip"),
                        help="fail at the first unreadable video (default), or skip it and list it in the output")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.fid_frames < 2 and "fid" in args.metrics:
        print("dtl eval: error: --fid-frames must be at least 2", file=sys.stderr)
        return 2
    options = EvalOptions(metrics=tuple(dict.fromkeys(args.metrics)), portrait=args.portrait,
                          syncnet_weights=args.syncnet_weights, sync_expert=args.sync_expert,
                          emotion_classifier=args.emotion_classifier, fid_frames=args.fid_frames,
                          sample_frames=args.sample_frames, lpips_net=args.lpips_net,
                          identity_backbone=args.identity_backbone, arcface_weights=args.arcface_weights,
                          arcface_sha256=args.arcface_sha256, identity_threshold=args.identity_threshold,
                          face_stride=max(args.face_stride, 1),
                          device=args.device)
    if args.checkpoint is None and (args.renderer or args.refiner):
        print("dtl eval: error: --renderer and --refiner need --checkpoint (the EmoDiff run to generate with)",
              file=sys.stderr)
        return 2
    generated, reference, group = args.generated, args.reference, args.group
    if args.checkpoint is not None:
        from experiments.evaluate.generation import generate_split  # the model stack, only with --checkpoint

        try:
            made = generate_split(args.checkpoint, args.renderer or "warp", args.generated, refiner=args.refiner,
                                  split=args.split, limit=args.limit, steps=args.steps, guidance=args.guidance,
                                  seed=args.seed, device=args.device)
        except (FileNotFoundError, ValueError) as e:
            print(f"dtl eval: error: {e}", file=sys.stderr)
            return 1
        print(f"dtl eval: {args.split} split: {len(made.generated)} videos generated, {len(made.kept)} kept from "
              f"an earlier call, in {made.videos}", file=sys.stderr)
        generated, reference, group = made.videos, reference or made.corpus, group or made.group
    out = args.out or generated.resolve().parent / f"eval_{generated.resolve().stem}"
    try:
        with hold_directory(out, what="evaluation output directory"):
            return evaluate_into(out, generated, reference, group, options, args)
    except DirectoryHeld as e:
        print(f"dtl eval: error: {e}", file=sys.stderr)
        return 1


def evaluate_into(out: Path, generated: Path, reference: Path | None, group: str | None, options: EvalOptions,
                  args: argparse.Namespace) -> int:
    """Evaluate, write metrics.json, per_video.csv and metrics.md into `out` (held by this process), log to W&B."""
    try:
        result = evaluate(generated, reference, options, on_error=args.on_error)
        if args.controls:
            result["controls"] = run_controls(
                match_videos(generated, reference), out, options.portrait,
                lambda folder: evaluate(folder, reference, options, on_error=args.on_error, progress=False))
    except (EvaluationInputError, VideoReadError, ValueError, FileNotFoundError) as e:
        print(f"dtl eval: error: {e}", file=sys.stderr)
        return 1
    paths = write_outputs(out, result)
    if not args.no_wandb:
        result["wandb_dir"] = log_to_wandb(result, out, group, args.project, args.name)
    for skipped, reason in result["skipped"].items():
        print(f"dtl eval: {skipped} not computed: {reason}", file=sys.stderr)
    print(paths["markdown"].read_text())
    print(f"written: {', '.join(str(p) for p in paths.values())}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
