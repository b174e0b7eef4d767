"""Feature extraction throughput: cold (workers 0 and 2) against cached reads, on espeak-ng speech or a corpus."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from dtl_foundation.media.audio import audio_duration, load_audio
from datamodules.feature_cache import FeatureCache, precompute_features
from datamodules.features import FeatureConfig, compute_features

AUDIO_SUFFIXES = (".wav", ".flac", ".m4a", ".mp3")
WORDS = ("the quick brown fox jumps over a lazy dog while seven happy people sing about rain in "
         "spring morning light across quiet rivers and distant hills where old friends meet again").split()
VOICES = ("en", "en-us", "en+f3", "en+m3", "en-gb-x-rp", "en+f2")


def make_speech(out_dir: Path, count: int, audio_format: str, seed: int = 0) -> list[Path]:
    """`count` espeak-ng utterances of 6-9 words (about 2-3 s), converted to `audio_format` with ffmpeg."""
    import imageio_ffmpeg

    rng = random.Random(seed)
    jobs = [(out_dir / f"utt{i:04d}.wav", " ".join(rng.choices(WORDS, k=rng.randint(6, 9))), rng.choice(VOICES))
            for i in range(count)]

    def make(job: tuple[Path, str, str]) -> Path:
        wav, text, voice = job
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, capture_output=True)
        if audio_format == "wav":
            return wav
        out = wav.with_suffix(f".{audio_format}")
        codec = {"m4a": ["-c:a", "aac"], "mp3": ["-c:a", "libmp3lame"], "flac": []}[audio_format]
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y", "-i", str(wav),
                        *codec, str(out)], check=True)
        wav.unlink()
        return out

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(make, jobs))


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clips", type=int, default=200, help="utterances to generate (or to take from --corpus)")
    parser.add_argument("--corpus", type=Path, help="use the audio files under this folder instead of espeak-ng")
    parser.add_argument("--format", default="wav", choices=["wav", "flac", "m4a", "mp3"],
                        help="container of the generated clips (MEAD ships m4a)")
    parser.add_argument("--kind", default="logmel", choices=["logmel", "mfcc", "logmel+mfcc"])
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench_features."))
    try:
        if args.corpus:
            clips = sorted(p for p in args.corpus.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)[:args.clips]
            source = str(args.corpus)
        else:
            if shutil.which("espeak-ng") is None:
                sys.exit("espeak-ng is not installed; pass --corpus DIR")
            (work / "audio").mkdir()
            generation_s, clips = timed(lambda: make_speech(work / "audio", args.clips, args.format))
            source = f"espeak-ng, generated in {generation_s:.1f} s"
        if not clips:
            sys.exit("no audio clips found")
        seconds = sum(audio_duration(p) for p in clips)
        cfg = FeatureConfig(kind=args.kind)
        compute_features(np.zeros(1600, np.float32), args.fps, cfg)  # librosa's one-off import/JIT cost, ~1 s

        n = len(clips)
        figures: dict[str, float | int | str] = {
            "clips": n, "audio_seconds": round(seconds, 1), "format": args.format if not args.corpus else "corpus",
            "kind": args.kind, "dim": cfg.dim, "fps": args.fps, "source": source,
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus"}

        sample = clips[:min(n, 50)]
        with threadpool_limits(limits=1):  # as precompute_features runs them
            decode_s, waves = timed(lambda: [load_audio(p) for p in sample])
            features_s, _ = timed(lambda: [compute_features(w, args.fps, cfg) for w in waves])
        figures["decode_ms_per_clip"] = round(1000 * decode_s / len(sample), 2)
        figures["features_ms_per_clip"] = round(1000 * features_s / len(sample), 2)

        cold_s = {}
        for workers in (0, 2):
            cache = FeatureCache(work / f"cache_w{workers}", cfg)
            cold_s[workers], report = timed(lambda: precompute_features(clips, cache, args.fps, workers=workers,
                                                                        progress=False))
            assert report["computed"] == n, report
            figures[f"cold_w{workers}_clips_per_s"] = round(n / cold_s[workers], 1)
        # A spawned worker pays ~1 s of imports before its first clip; measure it on two clips.
        startup_s, _ = timed(lambda: precompute_features(clips[:2], FeatureCache(work / "cache_start", cfg), args.fps,
                                                         workers=2, progress=False))
        figures["w2_pool_start_s"] = round(startup_s, 2)
        if cold_s[2] > startup_s:
            figures["cold_w2_after_start_clips_per_s"] = round((n - 2) / (cold_s[2] - startup_s), 1)

        cold_root = work / "cache_w0"
        reader = FeatureCache(cold_root, cfg)  # a new instance: it must hash every file once
        hashed_s, _ = timed(lambda: [reader.get(p, args.fps) for p in clips])
        memo_s, _ = timed(lambda: [reader.get(p, args.fps) for p in clips])  # hashes remembered: the per-epoch cost
        assert reader.stats["misses"] == 0, reader.stats
        figures["cached_clips_per_s"] = round(n / hashed_s, 1)
        figures["cached_memo_clips_per_s"] = round(n / memo_s, 1)
        figures["cached_vs_cold_w0"] = round((n / hashed_s) / figures["cold_w0_clips_per_s"], 1)
        figures["cached_vs_cold_w2"] = round((n / hashed_s) / figures["cold_w2_clips_per_s"], 1)
        figures["cache_mb"] = round(sum(f.stat().st_size for f in cold_root.rglob("*.npy")) / 2 ** 20, 2)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    for key, value in figures.items():
        print(f"{key:>32}: {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
