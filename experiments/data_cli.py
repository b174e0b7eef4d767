"""`dtl data`: build the demo corpus (and its videos), validate a corpus into a manifest, precompute audio features,
learn an expression prior from ARKit tracks, extract ARKit tracks from videos."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from datamodules.corpus import order_note, scan_corpus
from datamodules.demo.build import build_demo_corpus
from datamodules.demo.videos import render_demo_videos
from datamodules.extraction.expression_prior import PriorError, prior_from_tracks
from datamodules.extraction.books import ExtractError, ExtractOptions, excluded_clip_ids, parse_shard
from datamodules.extraction.extract import run_extraction
from datamodules.extraction.quality import QualityThresholds
from datamodules.feature_cache import FeatureCache, precompute_features
from datamodules.features import FeatureConfig
from datamodules.manifest import Manifest
from dtl_foundation.slurm import requeue_on_sigusr1


def cmd_demo(ns: argparse.Namespace) -> int:
    root = build_demo_corpus(ns.root, speakers=ns.speakers, sentences=ns.sentences, seed=ns.seed,
                             workers=ns.workers)
    manifest = scan_corpus(root, val_speakers=1, test_speakers=1, seed=ns.seed)
    manifest.save(root / "manifest.jsonl")
    print(f"SYNTHETIC demo corpus: {len(manifest)} clips of {len(manifest.speakers())} speakers in {root}")
    print(f"manifest: {root / 'manifest.jsonl'}")
    if ns.video:
        return render_videos(root, size=ns.size)
    return 0


def spread_clip_ids(root: Path, per_speaker: int) -> list[str]:
    """`per_speaker` clips of each speaker, evenly spread over its clips in id order (emotions and levels mixed)."""
    manifest = scan_corpus(root, val_speakers=0, test_speakers=0, on_error="skip", progress=False)
    chosen = []
    for speaker in manifest.speakers():
        ids = sorted(r.clip_id for r in manifest.records if r.speaker == speaker)
        step = max(len(ids) / per_speaker, 1.0)
        chosen += sorted({ids[int(k * step)] for k in range(min(per_speaker, len(ids)))})
    return chosen


def render_videos(root: Path, *, size: int, view: str = "front", overwrite: bool = False,
                  limit: int | None = None, per_speaker: int | None = None) -> int:
    clip_ids = spread_clip_ids(root, per_speaker) if per_speaker else None
    report = render_demo_videos(root, size=size, view=view, overwrite=overwrite, limit=limit, clip_ids=clip_ids)
    print(f"videos: {report['rendered']} rendered, {report['skipped_valid']} already valid, "
          f"{len(report['failed'])} failed, {report['frames']} frames in {report['seconds']:.1f} s "
          f"-> {root}/<ID>/video/{view}/")
    for failure in report["failed"]:
        print(f"{failure['clip_id']}: {failure['error']}", file=sys.stderr)
    return 1 if report["failed"] else 0


def cmd_videos(ns: argparse.Namespace) -> int:
    return render_videos(Path(ns.corpus), size=ns.size, view=ns.view, overwrite=ns.overwrite, limit=ns.limit,
                         per_speaker=ns.per_speaker)


def cmd_scan(ns: argparse.Namespace) -> int:
    out = Path(ns.out) if ns.out else Path(ns.corpus) / "manifest.jsonl"
    manifest = scan_corpus(ns.corpus, fps=ns.fps, csv_fps=ns.csv_fps, view=ns.view,
                           val_speakers=ns.val_speakers, test_speakers=ns.test_speakers, seed=ns.seed,
                           on_error=ns.on_error, report_path=out.with_name(out.stem + ".skipped.json"),
                           workers=ns.workers)
    manifest.save(out)
    manifest.save_csv(out.with_suffix(".csv"))
    counts = {s: len(manifest.split(s)) for s in ("train", "val", "test")}
    print(f"{len(manifest)} clips {counts}, {len(manifest.skipped)} skipped -> {out}")
    print(order_note(manifest.arkit_order, manifest.arkit_order_stated))
    return 0


def cmd_features(ns: argparse.Namespace) -> int:
    source = Path(ns.source)
    manifest = Manifest.load(source) if source.is_file() else scan_corpus(source, on_error="skip")
    cache = FeatureCache(Path(ns.cache), FeatureConfig(kind=ns.kind))
    report = precompute_features([r.audio_path for r in manifest.records], cache, ns.fps,
                                 workers=ns.workers, progress=True)
    print(json.dumps({k: v for k, v in report.items() if k != "errors"}))
    for error in report.get("errors", []):
        print(error, file=sys.stderr)
    return 1 if report.get("failed") else 0


def cmd_extract(ns: argparse.Namespace) -> int:
    corpus = Path(ns.corpus)
    thresholds = QualityThresholds(max_residual=ns.max_residual, min_face_share=ns.min_quality_face_share,
                                   max_landmark_jitter=ns.max_landmark_jitter, max_coeff_jitter=ns.max_coeff_jitter)
    try:
        options = ExtractOptions(corpus=corpus, out=Path(ns.out) if ns.out else corpus, view=ns.view, fps=ns.fps,
                                 backend=ns.backend, workers=ns.workers, shard=parse_shard(ns.shard), csv=ns.csv,
                                 limit=ns.limit, device=ns.device, min_face_share=ns.min_face_share,
                                 thresholds=thresholds, model=ns.model, model_sha256=ns.model_sha256,
                                 retry_failed=ns.retry_failed, prior=Path(ns.prior) if ns.prior else None)
        requeue_on_sigusr1()  # under Slurm: requeued before the time limit, the next start skips the clips done
        report = run_extraction(options)
    except ExtractError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{report.extracted} clips extracted, {report.skipped_done} already done, {len(report.failed)} failed, "
          f"{len(report.below_quality)} below the quality thresholds; {report.frames} frames in "
          f"{report.seconds:.1f} s -> {options.out} (records in {options.books()})")
    for failure in report.failed:
        print(f"{failure['clip_id']}: {failure.get('kind')}: {failure.get('problem')}", file=sys.stderr)
    if ns.manifest:
        manifest = scan_corpus(options.out, fps=ns.fps, view=ns.view, on_error="skip", progress=False)
        excluded = excluded_clip_ids(options) if ns.exclude_below else set()
        kept = [r for r in manifest.records if r.clip_id not in excluded]
        dataclasses.replace(manifest, records=kept).save(ns.manifest)
        print(f"manifest: {len(kept)} clips -> {ns.manifest}"
              + (f" ({len(excluded)} below the quality thresholds left out)" if excluded else ""))
    return 1 if report.failed else 0


def cmd_prior(ns: argparse.Namespace) -> int:
    try:
        prior = prior_from_tracks(ns.source, ns.speakers, min_std=ns.min_std)
    except PriorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    prior.save(ns.out)
    who = ", ".join(prior.speakers)
    print(f"expression prior from {prior.frames} frames of {len(prior.speakers)} speakers ({who}); Ledoit-Wolf "
          f"shrinkage {prior.shrinkage:.3f} -> {ns.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dtl data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="build the SYNTHETIC demo corpus (espeak-ng speech, derived ARKit tracks)")
    demo.add_argument("--root", default="data/demo")
    demo.add_argument("--speakers", type=int, default=6)
    demo.add_argument("--sentences", type=int, default=10)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--workers", type=int, default=None)
    demo.add_argument("--video", action="store_true",
                      help="also render every clip's track with the default rig to <ID>/video/front/... (MP4 + audio)")
    demo.add_argument("--size", type=int, default=256, help="video size in pixels (with --video)")
    demo.set_defaults(func=cmd_demo)

    scan = sub.add_parser("scan", help="validate a MEAD-layout corpus and write its manifest")
    scan.add_argument("corpus")
    scan.add_argument("--out", help="manifest path (default CORPUS/manifest.jsonl)")
    scan.add_argument("--fps", type=float, default=None, help="rate of .npy tracks (default: CORPUS.json or 25)")
    scan.add_argument("--csv-fps", type=float, default=60.0,
                      help="rate of Live Link Face CSV tracks whose timecodes hold no whole second to count rows in")
    scan.add_argument("--view", default="front")
    scan.add_argument("--val-speakers", type=int, default=1)
    scan.add_argument("--test-speakers", type=int, default=1)
    scan.add_argument("--seed", type=int, default=0)
    scan.add_argument("--on-error", choices=["fail", "skip"], default="fail")
    scan.add_argument("--workers", type=int, default=0)
    scan.set_defaults(func=cmd_scan)

    videos = sub.add_parser("videos", help="render a corpus's blendshape tracks with the default rig to MP4 + audio "
                                           "(resumable: valid videos are kept)")
    videos.add_argument("corpus")
    videos.add_argument("--size", type=int, default=256)
    videos.add_argument("--view", default="front")
    videos.add_argument("--overwrite", action="store_true")
    videos.add_argument("--limit", type=int, default=None, help="only the first N clips (by clip id)")
    videos.add_argument("--per-speaker", type=int, default=None,
                        help="only N clips of each speaker, spread over its emotions and levels")
    videos.set_defaults(func=cmd_videos)

    extract = sub.add_parser("extract", help="fit ARKit tracks and head poses to every video of a MEAD-layout "
                                             "corpus (resumable; --shard K/N for one Slurm array task)")
    extract.add_argument("corpus")
    extract.add_argument("--out", help="write tracks under this root instead of the corpus (same layout)")
    extract.add_argument("--view", default="front")
    extract.add_argument("--fps", type=float, default=25.0, help="rate the frames are decoded and tracks written at")
    extract.add_argument("--backend", choices=["fit", "mediapipe"], default="fit")
    extract.add_argument("--workers", type=int, default=1, help="clips in parallel (processes)")
    extract.add_argument("--shard", default="0/1", help="K/N: only every N-th clip from the K-th (0 <= K < N); "
                         "K = array: this Slurm array task's id (`dtl submit extract` writes that)")
    extract.add_argument("--csv", action="store_true", help="also write Live Link Face CSVs to <ID>/livelink/...")
    extract.add_argument("--limit", type=int, default=None, help="only the first N clips (by clip id)")
    extract.add_argument("--device", default="cpu", help="torch device of the fit")
    extract.add_argument("--min-face-share", type=float, default=0.5,
                         help="a clip with a face on fewer frames fails as no_face")
    extract.add_argument("--retry-failed", action="store_true", help="retry clips that failed in an earlier run")
    extract.add_argument("--model", help="mediapipe: face_landmarker.task (or $DTL_MEDIAPIPE_TASK)")
    extract.add_argument("--model-sha256", help="mediapipe: expected sha256 of the model file")
    extract.add_argument("--max-residual", type=float, default=0.06,
                         help="quality: mean landmark error / inter-ocular distance above this is listed")
    extract.add_argument("--min-quality-face-share", type=float, default=0.9)
    extract.add_argument("--max-landmark-jitter", type=float, default=0.05)
    extract.add_argument("--max-coeff-jitter", type=float, default=0.08)
    extract.add_argument("--prior", help="fit: an expression prior (.npz from `dtl data prior`) for a MAP fit")
    extract.add_argument("--manifest", help="then scan the output root into this manifest (JSONL)")
    extract.add_argument("--exclude-below", action="store_true",
                         help="leave the clips below the quality thresholds out of --manifest")
    extract.set_defaults(func=cmd_extract)

    prior = sub.add_parser("prior", help="learn a Gaussian expression prior for `extract --prior` from ARKit tracks")
    prior.add_argument("source", help="a corpus (<ID>/arkit/**.npy or Live Link Face .csv) or a manifest.jsonl")
    prior.add_argument("--out", required=True, help="the prior file to write (.npz)")
    prior.add_argument("--speakers", nargs="+", default=None, help="only these speakers' tracks")
    prior.add_argument("--min-std", type=float, default=0.01, help="floor under every shape's standard deviation")
    prior.set_defaults(func=cmd_prior)

    feats = sub.add_parser("features", help="precompute audio features into the cache")
    feats.add_argument("source", help="a manifest.jsonl or a corpus directory")
    feats.add_argument("--cache", default="data/cache/features")
    feats.add_argument("--kind", default="logmel", choices=["logmel", "mfcc", "logmel+mfcc"])
    feats.add_argument("--fps", type=float, default=25.0)
    feats.add_argument("--workers", type=int, default=2)
    feats.set_defaults(func=cmd_features)
    return parser


def main(argv: list[str]) -> int:
    ns = build_parser().parse_args(argv)
    return ns.func(ns)
