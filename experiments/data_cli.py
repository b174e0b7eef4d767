"""`dtl data`: build the demo corpus (and its videos), validate a corpus into a manifest, precompute audio features."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def cmd_demo(ns: argparse.Namespace) -> int:
    from datamodules.corpus import scan_corpus
    from datamodules.demo.build import build_demo_corpus

    root = build_demo_corpus(ns.root, speakers=ns.speakers, sentences=ns.sentences, seed=ns.seed,
                             workers=ns.workers)
    manifest = scan_corpus(root, val_speakers=1, test_speakers=1, seed=ns.seed)
    manifest.save(root / "manifest.jsonl")
    print(f"SYNTHETIC demo corpus: {len(manifest)} clips of {len(manifest.speakers())} speakers in {root}")
    print(f"manifest: {root / 'manifest.jsonl'}")
    if ns.video:
        return render_videos(root, size=ns.size)
    return 0


def render_videos(root: Path, *, size: int, view: str = "front", overwrite: bool = False,
                  limit: int | None = None) -> int:
    from rendering.demo_videos import render_demo_videos

    report = render_demo_videos(root, size=size, view=view, overwrite=overwrite, limit=limit)
    print(f"videos: {report['rendered']} rendered, {report['skipped_valid']} already valid, "
          f"{len(report['failed'])} failed, {report['frames']} frames in {report['seconds']:.1f} s "
          f"-> {root}/<ID>/video/{view}/")
    for failure in report["failed"]:
        print(f"{failure['clip_id']}: {failure['error']}", file=sys.stderr)
    return 1 if report["failed"] else 0


def cmd_videos(ns: argparse.Namespace) -> int:
    return render_videos(Path(ns.corpus), size=ns.size, view=ns.view, overwrite=ns.overwrite, limit=ns.limit)


def cmd_scan(ns: argparse.Namespace) -> int:
    from datamodules.corpus import scan_corpus

    out = Path(ns.out) if ns.out else Path(ns.corpus) / "manifest.jsonl"
    manifest = scan_corpus(ns.corpus, fps=ns.fps, csv_fps=ns.csv_fps, view=ns.view,
                           val_speakers=ns.val_speakers, test_speakers=ns.test_speakers, seed=ns.seed,
                           on_error=ns.on_error, report_path=out.with_name(out.stem + ".skipped.json"),
                           workers=ns.workers)
    manifest.save(out)
    manifest.save_csv(out.with_suffix(".csv"))
    counts = {s: len(manifest.split(s)) for s in ("train", "val", "test")}
    print(f"{len(manifest)} clips {counts}, {len(manifest.skipped)} skipped -> {out}")
    return 0


def cmd_features(ns: argparse.Namespace) -> int:
    from datamodules.corpus import scan_corpus
    from datamodules.manifest import Manifest
    from datamodules.feature_cache import FeatureCache, precompute_features
    from datamodules.features import FeatureConfig

    source = Path(ns.source)
    manifest = Manifest.load(source) if source.is_file() else scan_corpus(source, on_error="skip")
    cache = FeatureCache(Path(ns.cache), FeatureConfig(kind=ns.kind))
    report = precompute_features([r.audio_path for r in manifest.records], cache, ns.fps,
                                 workers=ns.workers, progress=True)
    print(json.dumps({k: v for k, v in report.items() if k != "errors"}))
    for error in report.get("errors", []):
        print(error, file=sys.stderr)
    return 1 if report.get("failed") else 0


def main(argv: list[str]) -> int:
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
    scan.add_argument("--csv-fps", type=float, default=60.0, help="rate of Live Link Face CSV tracks")
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
    videos.set_defaults(func=cmd_videos)

    feats = sub.add_parser("features", help="precompute audio features into the cache")
    feats.add_argument("source", help="a manifest.jsonl or a corpus directory")
    feats.add_argument("--cache", default="data/cache/features")
    feats.add_argument("--kind", default="logmel", choices=["logmel", "mfcc", "logmel+mfcc"])
    feats.add_argument("--fps", type=float, default=25.0)
    feats.add_argument("--workers", type=int, default=2)
    feats.set_defaults(func=cmd_features)

    ns = parser.parse_args(argv)
    return ns.func(ns)
