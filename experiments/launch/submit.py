"""`dtl submit experiment=... [overrides]`: render an sbatch script from the composed config and submit it
(`dtl submit extract CORPUS --shards N`: ARKit extraction as a job array, experiments/launch/extract.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import DictConfig

from experiments.config import compose_config
from experiments.launch import extract
from experiments.launch.sbatch import render_sbatch, write_and_submit


def compose_for_submit(overrides: list[str]) -> DictConfig:
    """The training config as the job will see it (validates the overrides now, not hours later in the queue)."""
    return compose_config(overrides + ["run_id=at-submit"])


def main(argv: list[str]) -> int:
    if argv[:1] == ["extract"]:
        return extract.main(argv[1:])
    parser = argparse.ArgumentParser(prog="dtl submit", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="print the sbatch script, submit nothing")
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides, e.g. experiment=emodiff_demo launcher.gpus_per_node=4")
    ns = parser.parse_args(argv)
    cfg = compose_for_submit(ns.overrides)
    script = render_sbatch(cfg, ns.overrides)
    if ns.dry_run:
        print(script)
        return 0
    log_dir = Path(cfg.launcher.log_dir).resolve()
    try:
        job, path = write_and_submit(script, log_dir, cfg.experiment_name)
    except RuntimeError as e:
        print(f"dtl submit: {e}", file=sys.stderr)
        return 1
    print(f"submitted job {job}: run directory {Path(cfg.paths.output_root).resolve()}/{cfg.experiment_name}/"
          f"slurm-{job}, log {log_dir}/{cfg.launcher.job_name}-{job}.out, script {path}")
    return 0
