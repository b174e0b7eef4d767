"""Print the final test metrics of run directories side by side (from their CSV logs)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path


def final_metrics(run_dir: Path) -> dict[str, float]:
    """The last logged value of every metric over all attempts of a run (a resumed attempt overrides)."""
    values: dict[str, float] = {}
    attempts = sorted((run_dir / "csv").glob("attempt_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not attempts:
        raise FileNotFoundError(f"{run_dir}: no csv/attempt_*/metrics.csv (not a dtl run directory?)")
    for path in attempts:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                values.update({k: float(v) for k, v in row.items() if v not in ("", None) and k not in ("step", "epoch")})
    return values


def main(run_dirs: list[str]) -> int:
    runs = {d: final_metrics(Path(d)) for d in run_dirs}
    keys = sorted({k for m in runs.values() for k in m if k.startswith(("test/", "val/"))})
    width = max(len(d) for d in runs)
    print(f"{'run':<{width}}  " + "  ".join(f"{k:>18}" for k in keys))
    for d, m in runs.items():
        print(f"{d:<{width}}  " + "  ".join(f"{m[k]:>18.4f}" if k in m else f"{'-':>18}" for k in keys))
    print("(demo corpus: SYNTHETIC; test = held-out speakers; mouth_error = mean |error| of the 27 jaw/mouth coefficients)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
