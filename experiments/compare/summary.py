"""Print the final test metrics of run directories side by side (from their CSV logs)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from dtl_foundation.run_layout import RunLayout


def final_metrics(run_dir: Path) -> dict[str, float]:
    """The last logged value of every metric over all attempts of a run (a resumed attempt overrides)."""
    values: dict[str, float] = {}
    attempts = RunLayout(run_dir).csv_logs()
    if not attempts:
        raise FileNotFoundError(f"{run_dir}: no csv/attempt_*/metrics.csv (not a dtl run directory?)")
    for path in attempts:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                values.update({k: float(v) for k, v in row.items()
                               if v not in ("", None) and k not in ("step", "epoch")})
    return values


def main(run_dirs: list[str]) -> int:
    runs = {d: final_metrics(Path(d)) for d in run_dirs}
    keys = sorted({k for m in runs.values() for k in m if k.startswith("test/") and k != "test/loss"})
    names = [Path(d).parent.name for d in runs]  # the experiment of each run directory
    width, column = max(len(k) for k in keys), max(12, *(len(n) for n in names))
    print(f"{'metric':<{width}}  " + "  ".join(f"{n:>{column}}" for n in names))
    for k in keys:
        print(f"{k:<{width}}  " + "  ".join(f"{m[k]:>{column}.4f}" if k in m else f"{'-':>{column}}"
                                           for m in runs.values()))
    print("(demo corpus: SYNTHETIC; test = held-out speakers; mouth_error = mean |error| of the 27 jaw/mouth "
          "coefficients; sync = Pearson r of jawOpen with loudness at the best lag within +-5 frames; "
          "upper_face_dd = upper-face dynamics deviation; test/source/* = the EmoDiff samples the lip refiner refined)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
