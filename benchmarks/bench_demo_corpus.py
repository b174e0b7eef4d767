"""Demo corpus build time: the default corpus (6 speakers x 22 emotion-levels x 10 sentences), cold, per worker
count."""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import soundfile as sf

from datamodules.demo.build import build_demo_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--speakers", type=int, default=6)
    parser.add_argument("--sentences", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}")
    for workers in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "demo"
            start = time.perf_counter()
            build_demo_corpus(root, speakers=args.speakers, sentences=args.sentences, workers=workers,
                              progress=False)
            seconds = time.perf_counter() - start
            wavs = list(root.rglob("*.wav"))
            audio = sum(sf.info(w).duration for w in wavs)
            start = time.perf_counter()
            build_demo_corpus(root, speakers=args.speakers, sentences=args.sentences, workers=workers,
                              progress=False)
            again = time.perf_counter() - start
            print(f"workers={workers}: {len(wavs)} clips, {audio / 60:.1f} min of audio in {seconds:.1f} s "
                  f"({len(wavs) / seconds:.0f} clips/s, {audio / seconds:.0f}x real time); "
                  f"second call on the complete corpus {again * 1000:.0f} ms")


if __name__ == "__main__":
    main()
