"""`dtl submit experiment=... [overrides]`: render an sbatch script from the composed config and submit it
(`dtl submit extract CORPUS --shards N`: ARKit extraction as a job array, experiments/launch/extract.py)."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from dtl_foundation.atomic_files import atomic_write_text
from datamodules import config_resolvers  # noqa: F401  (registers the config resolvers)

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = str(REPO / "configs")  # the same folder experiments.train reads; kept here so submitting skips torch


def compose_config(overrides: list[str]) -> DictConfig:
    """The training config for these overrides, as `dtl train` composes it."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def compose_for_submit(overrides: list[str]) -> DictConfig:
    """The training config as the job will see it (validates the overrides now, not hours later in the queue)."""
    return compose_config(overrides + ["run_id=at-submit"])


def device_overrides(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """The trainer overrides that match the Slurm allocation: one device per task, DDP when there are several."""
    launch = cfg.launcher
    gpus = int(launch.gpus_per_node)
    tasks = gpus if gpus else int(launch.cpu_tasks_per_node)
    devices = [f"trainer.devices={tasks}", f"trainer.num_nodes={launch.nodes}"]
    if not gpus:
        devices.append("trainer.accelerator=cpu")
    if tasks * int(launch.nodes) > 1 and not any(a.startswith(("trainer=", "trainer.strategy=")) for a in overrides):
        devices.append("trainer.strategy=ddp")
    return devices


def render_sbatch(cfg: DictConfig, overrides: list[str], python: str = sys.executable, *, array: str | None = None,
                  command: list[str] | None = None, extra_setup: Sequence[str] = (), about: str | None = None) -> str:
    """The sbatch script: resources, requeue on SIGUSR1, one srun task per device running `dtl train`.

    `array` makes it a job array (`--array=SPEC`, one log per task); `command` replaces the `dtl train` line
    (the caller then adds `device_overrides` itself); `extra_setup` are shell lines run after launcher.setup;
    `about` replaces the script's comment on where the job's outputs go.
    """
    launch = cfg.launcher
    gpus = int(launch.gpus_per_node)
    tasks = gpus if gpus else int(launch.cpu_tasks_per_node)
    log_name = "%x-%A_%a.out" if array else "%x-%j.out"
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name={launch.job_name}",
             f"#SBATCH --nodes={launch.nodes}",
             f"#SBATCH --ntasks-per-node={tasks}",
             f"#SBATCH --cpus-per-task={launch.cpus_per_task}",
             f"#SBATCH --mem={launch.mem_gb}G",
             f"#SBATCH --time={launch.time}",
             f"#SBATCH --signal=SIGUSR1@{launch.signal_seconds}",
             f"#SBATCH --output={Path(launch.log_dir).resolve()}/{log_name}",
             "#SBATCH --open-mode=append"]
    if array:
        lines.append(f"#SBATCH --array={array}")
    if gpus:
        lines.append(f"#SBATCH --gres=gpu:{gpus}")
    if launch.requeue:
        lines.append("#SBATCH --requeue")
    for key in ("partition", "account", "qos", "constraint"):
        if launch.get(key):
            lines.append(f"#SBATCH --{key}={launch[key]}")
    lines += [f"#SBATCH {option}" for option in launch.extra_sbatch]
    where = about or ("each array task trains one point of the sweep in its own run directory, the same after a "
                      "requeue" if array else "the run directory is outputs/<experiment>/slurm-<job id>, the same "
                      "after a requeue")
    lines += ["", f"# dreamtalk-lab: {where}.",
              "set -euo pipefail", f"cd {shlex.quote(str(Path.cwd()))}",
              "# one OpenMP thread per allotted CPU: more threads than cores spin against each other",
              "export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}", *launch.setup]
    lines += list(extra_setup)
    if command is None:
        train_args = [a for a in overrides if not a.startswith("run_id=")]
        command = [python, "-m", "experiments.cli", "train", *train_args, *device_overrides(cfg, overrides)]
    lines += ["srun " + shlex.join(command), ""]
    return "\n".join(lines)


def sbatch_submit(script_path: Path, env: dict[str, str] | None = None) -> str:
    """Submit a written sbatch script; its job id (RuntimeError with Slurm's reason when sbatch refuses)."""
    out = subprocess.run(["sbatch", "--parsable", str(script_path)], capture_output=True, text=True,
                         env=os.environ if env is None else env)
    if out.returncode != 0:
        raise RuntimeError(f"sbatch refused {script_path}: {out.stderr.strip()}")
    return out.stdout.strip().split(";")[0]


def write_and_submit(script: str, log_dir: Path, name: str, env: dict[str, str] | None = None) -> tuple[str, Path]:
    """Write the script as <log_dir>/<name>-<time>.sbatch (atomically; the folder made, Slurm does not make the
    folder of --output) and submit it: (job id, script path); RuntimeError with Slurm's reason when refused."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.sbatch"
    atomic_write_text(path, script)
    return sbatch_submit(path, env), path


def main(argv: list[str]) -> int:
    if argv[:1] == ["extract"]:
        from experiments.launch.extract import main as submit_extract

        return submit_extract(argv[1:])
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
    try:
        job, path = write_and_submit(script, log_dir, cfg.experiment_name)
    except RuntimeError as e:
        print(f"dtl submit: {e}", file=sys.stderr)
        return 1
    print(f"submitted job {job}: run directory {Path(cfg.paths.output_root).resolve()}/{cfg.experiment_name}/"
          f"slurm-{job}, log {log_dir}/{cfg.launcher.job_name}-{job}.out, script {path}")
    return 0
