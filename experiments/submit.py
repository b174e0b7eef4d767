"""`dtl submit experiment=... [overrides]`: render an sbatch script from the composed config and submit it."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from datamodules.io_utils import atomic_write_text
from experiments import resolvers  # noqa: F401  (registers the config resolvers)
from experiments.train import CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]


def compose_for_submit(overrides: list[str]) -> DictConfig:
    """The training config as the job will see it (validates the overrides now, not hours later in the queue)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides + ["run_id=at-submit"])


def render_sbatch(cfg: DictConfig, overrides: list[str], python: str = sys.executable) -> str:
    """The sbatch script: resources, requeue on SIGUSR1, one srun task per device running `dtl train`."""
    launch = cfg.launcher
    gpus = int(launch.gpus_per_node)
    tasks = gpus if gpus else int(launch.cpu_tasks_per_node)
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name={launch.job_name}",
             f"#SBATCH --nodes={launch.nodes}",
             f"#SBATCH --ntasks-per-node={tasks}",
             f"#SBATCH --cpus-per-task={launch.cpus_per_task}",
             f"#SBATCH --mem={launch.mem_gb}G",
             f"#SBATCH --time={launch.time}",
             f"#SBATCH --signal=SIGUSR1@{launch.signal_seconds}",
             f"#SBATCH --output={Path(launch.log_dir).resolve()}/%x-%j.out",
             "#SBATCH --open-mode=append"]
    if gpus:
        lines.append(f"#SBATCH --gres=gpu:{gpus}")
    if launch.requeue:
        lines.append("#SBATCH --requeue")
    for key in ("partition", "account", "qos", "constraint"):
        if launch.get(key):
            lines.append(f"#SBATCH --{key}={launch[key]}")
    lines += [f"#SBATCH {option}" for option in launch.extra_sbatch]
    lines += ["", "# dreamtalk-lab: the run directory is outputs/<experiment>/slurm-<job id>, the same after a requeue.",
              "set -euo pipefail", f"cd {shlex.quote(str(Path.cwd()))}", *launch.setup]
    train_args = [a for a in overrides if not a.startswith("run_id=")]
    devices = [f"trainer.devices={tasks}", f"trainer.num_nodes={launch.nodes}"]
    if not gpus:
        devices.append("trainer.accelerator=cpu")
    if tasks * int(launch.nodes) > 1 and not any(a.startswith(("trainer=", "trainer.strategy=")) for a in overrides):
        devices.append("trainer.strategy=ddp")
    command = [python, "-m", "experiments.cli", "train", *train_args, *devices]
    lines += ["srun " + shlex.join(command), ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dtl submit", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="print the sbatch script, submit nothing")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=emodiff_demo launcher.gpus_per_node=4")
    ns = parser.parse_args(argv)
    cfg = compose_for_submit(ns.overrides)
    script = render_sbatch(cfg, ns.overrides)
    if ns.dry_run:
        print(script)
        return 0
    log_dir = Path(cfg.launcher.log_dir).resolve()
    path = log_dir / f"{cfg.experiment_name}-{time.strftime('%Y%m%d-%H%M%S')}.sbatch"
    atomic_write_text(path, script)
    out = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True, env=os.environ)
    if out.returncode != 0:
        print(f"dtl submit: sbatch refused {path}: {out.stderr.strip()}", file=sys.stderr)
        return 1
    job = out.stdout.strip().split(";")[0]
    print(f"submitted job {job}: run directory {Path(cfg.paths.output_root).resolve()}/{cfg.experiment_name}/"
          f"slurm-{job}, log {log_dir}/{cfg.launcher.job_name}-{job}.out, script {path}")
    return 0
