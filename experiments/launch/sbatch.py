"""sbatch scripts from the composed config, and their submission; shared by `dtl submit`, `dtl submit extract` and
`dtl sweep --slurm`."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig

from dtl_foundation.atomic_files import atomic_write_text


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
                  command: list[str] | None = None, extra_setup: Sequence[str] = (), about: str | None = None,
                  dependency: str | None = None) -> str:
    """The sbatch script: resources, requeue on SIGUSR1, one srun task per device running `dtl train`.

    `array` makes it a job array (`--array=SPEC`, one log per task); `command` replaces the `dtl train` line
    (the caller then adds `device_overrides` itself); `extra_setup` are shell lines run after launcher.setup;
    `about` replaces the script's comment on where the job's outputs go; `dependency` (`afterok:123_0:124`) holds
    the job until those jobs finish well, and cancels it when one of them fails.
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
    if dependency:
        lines += [f"#SBATCH --dependency={dependency}", "#SBATCH --kill-on-invalid-dep=yes"]
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
