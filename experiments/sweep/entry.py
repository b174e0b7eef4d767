"""`dtl sweep FILE`: a sweep file (experiments/sweep/command.py) or a pipeline file of chained sweeps
(experiments/sweep/pipeline.py), told apart by the pipeline's `stages` key."""

from __future__ import annotations

import sys

from experiments.sweep.command import parse_args, run_sweep
from experiments.sweep.engine import SweepFileError
from experiments.sweep.pipeline import is_pipeline_file, run_pipeline
from experiments.sweep.runs import SweepRunError
from experiments.sweep.store import SweepStateError


def main(argv: list[str]) -> int:
    ns = parse_args(argv)
    if not is_pipeline_file(ns.file):
        return run_sweep(ns)
    try:
        if ns.backend != "local" or ns.max_runs:
            raise SweepFileError(f"{ns.file}: a pipeline runs here or with --slurm (not --backend wandb or "
                                 "--max-runs)")
        return run_pipeline(ns.file, ns.overrides, ns.sweep_id, ns.slurm, ns.parallel, ns.dry_run)
    except (SweepFileError, SweepRunError, SweepStateError) as e:
        print(f"dtl sweep: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as e:  # sbatch refusals
        print(f"dtl sweep: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
