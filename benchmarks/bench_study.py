"""`dtl study serve` under load: N participants answering at once (one client thread each, every third answer sent
twice as a double click) against the server in its own process on SQLite; requests/s, latency percentiles, and
a check that the database holds each answer exactly once.

.venv/bin/python benchmarks/bench_study.py [--participants 50] [--clips 4] [--criteria lip_sync realism]
The clients run on the same machine as the server, so the figure is for both together.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from study_helpers import create_study, make_methods, serve_process, simulate_participants
from study_oracle import answered_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--criteria", nargs="+", default=["lip_sync", "realism"])
    parser.add_argument("--design", default="2afc", choices=("2afc", "mos"))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        clips = [f"S01_happy_level_3_{i:03d}" for i in range(args.clips)]
        folders = make_methods(root / "methods", {"first": (200, 160, 140), "second": (170, 140, 120)}, clips)
        study = create_study(root, "bench", folders, participants=args.participants, design=args.design,
                             criteria=tuple(args.criteria), attention_checks=1)
        with serve_process(study["db"]) as base:
            result = simulate_participants(base, study["tokens"], replay_every=3, seed=0)
        rows = answered_rows(study["db"], "bench")
    latencies = np.asarray(result["latencies"]) * 1000
    trials = len(rows) // args.participants
    duplicated = sum(n - 1 for n in Counter((r["participant"], r["position"]) for r in rows).values())
    sent = sum(len(s) for s in result["sent"].values())
    print(f"machine: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"{args.participants} participants at once, {trials} trials each ({args.design}), "
          f"{len(latencies)} requests in {result['wall_s']:.2f} s")
    print(f"requests/s: {len(latencies) / result['wall_s']:.0f}")
    print(f"latency ms: p50 {np.percentile(latencies, 50):.1f}, p90 {np.percentile(latencies, 90):.1f}, "
          f"p99 {np.percentile(latencies, 99):.1f}, max {latencies.max():.1f}")
    print(f"answers sent {sent}, stored {len(rows)}, duplicated {duplicated}")
    return 0 if sent == len(rows) and duplicated == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
