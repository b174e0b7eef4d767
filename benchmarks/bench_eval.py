"""The whole `dtl eval` of one 10-s talking video (rendered demo clips of one speaker joined, espeak-ng speech) with
every metric group, against its reference: seconds per metric group, printed.

The generated video is a degraded copy of the reference (blur + noise, re-encoded). Networks whose standard weights
are absent here (SyncNet v2, FID Inception, LPIPS AlexNet) run with seeded random weights of the same architecture,
which costs the same time; the output says which. The emotion group uses the FER2013 default unless --emotion-classifier
is given, lse_expert runs only with --sync-expert.

    .venv/bin/python benchmarks/bench_eval.py --corpus /tmp/democorpus [--seconds 10] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch
from scipy.ndimage import gaussian_filter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.evaluate.command import evaluate
from experiments.evaluate.scorers import METRIC_GROUPS, EvalOptions
from metrics.fid import write_seeded_fid_inception
from dtl_foundation.weights import MissingWeightsError, WeightsChecksumError, resolve_weights


def joined_video(corpus: Path, seconds: float, work: Path) -> Path:
    """<work>/reference/<speaker>/video/front/happy/level_3/001.mp4: happy level-3 clips of the first speaker with a
    rendered video, joined (stream copy) until `seconds` long."""
    clips = sorted(corpus.glob("*/video/front/happy/level_3/*.mp4"))
    if not clips:
        raise SystemExit(f"{corpus}: no rendered videos; run `dtl data demo --root {corpus} --video` first")
    speaker = clips[0].parts[-6]
    clips = [c for c in clips if c.parts[-6] == speaker]
    listing = work / "clips.txt"
    chosen, total = [], 0.0
    while total < seconds:
        clip = clips[len(chosen) % len(clips)]
        chosen.append(clip)
        total += float(subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(clip)], capture_output=True,
                                      text=True).stderr.split("Duration: ")[1].split(",")[0].split(":")[-1])
    listing.write_text("".join(f"file '{c}'\n" for c in chosen))
    out = work / "reference" / speaker / "video" / "front" / "happy" / "level_3" / "001.mp4"
    out.parent.mkdir(parents=True)
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "concat", "-safe", "0",
                    "-i", str(listing), "-t", f"{seconds:.2f}", "-c:v", "libx264", "-crf", "18", "-c:a", "aac",
                    str(out)], check=True)
    return out


def degraded_copy(reference: Path, root: Path, work: Path) -> Path:
    """The same relative path under <work>/generated: blurred, noisy frames with the reference's audio."""
    from dtl_foundation.media.video_read import read_video
    from dtl_foundation.media.video_write import write_video

    clip = read_video(reference)
    rng = np.random.default_rng(0)
    frames = gaussian_filter(clip.frames.astype(np.float32), sigma=(0, 1.2, 1.2, 0))
    frames += rng.normal(0, 5, clip.frames.shape)
    wav = work / "speech.wav"
    from scipy.io import wavfile

    wavfile.write(wav, clip.sample_rate, clip.audio)
    out = work / "generated" / reference.relative_to(root)
    out.parent.mkdir(parents=True)
    write_video(out, np.clip(frames, 0, 255).astype(np.uint8), 25.0, wav)
    return out


def standard_or_seeded(work: Path) -> tuple[dict, dict]:
    """EvalOptions fields for SyncNet / FID / LPIPS: the verified standard files when present, else seeded stand-ins."""
    from metrics.lpips_metric import lpips_network
    from metrics.syncnet import SyncNet

    fields, used = {}, {}
    for name in ("syncnet_v2", "fid_inception", "alexnet"):
        try:
            resolve_weights(name)
            used[name] = "standard file"
        except (MissingWeightsError, WeightsChecksumError):
            used[name] = "seeded random (standard file absent)"
    if used["syncnet_v2"] != "standard file":
        torch.manual_seed(0)
        torch.save(SyncNet().state_dict(), work / "syncnet_seeded.model")
        fields["syncnet_weights"] = work / "syncnet_seeded.model"
    if used["fid_inception"] != "standard file":
        from pytorch_fid.inception import InceptionV3

        home = work / "torch_home"
        write_seeded_fid_inception(home)
        previous = os.environ.get("TORCH_HOME")
        os.environ["TORCH_HOME"] = str(home)
        fields["fid_weights"] = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
        if previous is None:
            del os.environ["TORCH_HOME"]
        else:
            os.environ["TORCH_HOME"] = previous
    if used["alexnet"] != "standard file":
        import torchvision

        torch.manual_seed(0)
        fields["lpips_weights"] = lpips_network("alex", torchvision.models.alexnet(weights=None).state_dict())
    return fields, used


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True, help="a demo corpus with rendered videos")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sync-expert", type=Path)
    parser.add_argument("--emotion-classifier", type=Path)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        work = Path(tmp)
        reference = joined_video(args.corpus, args.seconds, work)
        degraded_copy(reference, work / "reference", work)
        fields, used = standard_or_seeded(work)
        options = EvalOptions(metrics=METRIC_GROUPS, sync_expert=args.sync_expert,
                              emotion_classifier=args.emotion_classifier, device=args.device, **fields)
        start = time.perf_counter()
        result = evaluate(work / "generated", work / "reference", options)
        total = time.perf_counter() - start
    frames = round(args.seconds * 25)
    figures = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch "
                          f"{torch.__version__}, device {args.device}",
               "video": f"{args.seconds:g} s, {frames} frames, 256 px", "weights": used,
               "seconds_per_metric": {k: round(v, 2) for k, v in result["seconds"].items()},
               "total_seconds": round(total, 2), "metrics": result["metrics"], "skipped": result["skipped"]}
    print(json.dumps(figures, indent=1, default=str))
    print("\n| metric group | seconds | x real time |\n|---|---|---|")
    for group, seconds in result["seconds"].items():
        print(f"| {group} | {seconds:.2f} | {args.seconds / max(seconds, 1e-9):.1f} |")
    print(f"| **total** | **{total:.2f}** | {args.seconds / total:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
