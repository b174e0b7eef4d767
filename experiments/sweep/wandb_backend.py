"""`dtl sweep FILE --backend wandb`: create the sweep on a W&B server, run its agents as one Slurm job array.

Each array task runs `wandb agent --count C ENTITY/PROJECT/SWEEP_ID`; the agent asks the server for a point and
starts `python -m experiments.sweep.task agent-run <overrides>`, which trains it as run
<sweep id>-<W&B run id> (online, group = sweep id). Needs a W&B account (`wandb login` or WANDB_API_KEY) or a
W&B Server (WANDB_BASE_URL): `wandb.sweep` and the agents talk to it. The tests check the sweep config and the
sbatch script (`--dry-run` prints both); the network call itself is not tested here (no server on CI).

A requeued task (SIGUSR1 before the time limit) starts a fresh agent, which takes the next point: W&B hands an
interrupted run back only when the run marked itself preempting (`wandb.mark_preempting()`).
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from pathlib import Path

import yaml

from dtl_foundation.atomic_files import atomic_write_text
from experiments.launch.sbatch import device_overrides, render_sbatch, sbatch_submit
from experiments.sweep.engine import SweepFileError, SweepSpec, grid_points, random_points, schema_errors, space_size
from experiments.sweep.runs import child_env, compose_run, plan_run

AGENT_ENTRY = ["-m", "experiments.sweep.task", "agent-run"]
SWEEP_ID_PLACEHOLDER = "<SWEEP_ID>"


def wandb_sweep_config(spec: SweepSpec, run_overrides: list[str], max_runs: int | None) -> dict:
    """The config `wandb.sweep` gets: the file's search (parameters flattened to Hydra keys), our command."""
    config = {k: v for k, v in spec.config.items() if k not in ("command", "program")}
    config["name"] = spec.name
    config["program"] = "experiments/sweep/task.py"
    # ${interpreter} is `python` on the agent's PATH: the sbatch script puts this interpreter's folder first.
    config["command"] = ["${env}", "${interpreter}", *AGENT_ENTRY, *run_overrides]
    if max_runs:
        config["run_cap"] = max_runs
    errors = schema_errors(config, spec.path)
    if errors:
        raise SweepFileError("\n".join(errors))
    return config


def agent_sbatch(cfg, overrides: list[str], target: str, count: int, tasks: int, parallel: int | None,
                 python: str = sys.executable) -> str:
    """The job array: task k runs one `wandb agent --count COUNT TARGET` (a single task: one agent per array task)."""
    check_one_task(cfg)
    interpreter_dir = Path(python).parent
    agent = interpreter_dir / "wandb"
    command = [str(agent) if agent.exists() else "wandb", "agent", "--count", str(count), target]
    array = f"0-{tasks - 1}" + (f"%{parallel}" if parallel else "")
    return render_sbatch(cfg, overrides, python, array=array, command=command,
                         extra_setup=[f'export PATH={shlex.quote(str(interpreter_dir))}:"$PATH"'])


def check_one_task(cfg) -> None:
    launch = cfg.launcher
    if int(launch.nodes) != 1 or (int(launch.gpus_per_node) or int(launch.cpu_tasks_per_node)) != 1:
        raise SweepFileError("--backend wandb runs one agent, hence one training process, per array task: use "
                             "launcher.nodes=1 and one device (launcher.gpus_per_node<=1, "
                             "launcher.cpu_tasks_per_node=1); for multi-device runs use --backend local --slurm")


def check_points(spec: SweepSpec, fixed: list[str]) -> None:
    """Compose the grid's points (or a few random ones) now: a typo fails here, not in every agent's run."""
    points = grid_points(spec) if spec.method == "grid" else random_points(
        spec, min(3, space_size(spec) or 3), [], seed="check")
    for k, params in enumerate(points):
        plan_run("wandb-sweep", k, params, fixed, str(spec.path))


def run_wandb_backend(spec: SweepSpec, fixed: list[str], *, max_runs: int | None, project: str | None,
                      entity: str | None, count: int, tasks: int | None, parallel: int | None, dry_run: bool) -> int:
    cfg = compose_run([f"launcher.job_name={spec.name}", *fixed, "run_id=at-submit"], f"{spec.path}: the overrides")
    if "wandb" not in (cfg.get("logger") or {}):
        raise SweepFileError("--backend wandb needs the W&B logger (logger.wandb); the overrides removed it")
    check_one_task(cfg)
    check_points(spec, fixed)
    run_overrides = [*fixed, *device_overrides(cfg, fixed)]
    wanted = (space_size(spec) or 1) if spec.method == "grid" else (max_runs or spec.run_cap)
    if spec.method == "grid" and max_runs:
        wanted = min(wanted, max_runs)
    if not tasks and not wanted:
        raise SweepFileError(f"{spec.path}: method {spec.method} needs --max-runs N, run_cap, or --array N")
    tasks = tasks or math.ceil(wanted / count)
    config = wandb_sweep_config(spec, run_overrides, max_runs if spec.method != "grid" else None)
    project = project or cfg.logger.wandb.project
    entity = entity or cfg.logger.wandb.entity
    if dry_run:
        target = "/".join(p for p in (entity, project, SWEEP_ID_PLACEHOLDER) if p)
        print(f"# W&B sweep config (wandb.sweep would create it in project {project}"
              + (f", entity {entity}" if entity else "") + "):")
        print(yaml.safe_dump(config, sort_keys=False).rstrip())
        print(f"# sbatch script ({tasks} array tasks x {count} runs; {SWEEP_ID_PLACEHOLDER} is the id W&B returns):")
        print(agent_sbatch(cfg, run_overrides, target, count, tasks, parallel))
        return 0
    import wandb

    try:
        sweep_id = wandb.sweep(sweep=config, project=project, entity=entity)
    except Exception as e:  # noqa: BLE001  (wandb raises CommError, UsageError, requests errors for no login)
        print(f"dtl sweep: W&B did not create the sweep ({e}); --backend wandb needs `wandb login` (or "
              "WANDB_API_KEY, WANDB_BASE_URL for W&B Server); --backend local works offline", file=sys.stderr)
        return 1
    target = "/".join(p for p in (entity, project, sweep_id) if p)
    script = agent_sbatch(cfg, run_overrides, target, count, tasks, parallel)
    log_dir = Path(cfg.launcher.log_dir).resolve()
    path = log_dir / f"{spec.name}-{sweep_id}-{time.strftime('%Y%m%d-%H%M%S')}.sbatch"
    atomic_write_text(path, script)
    job = sbatch_submit(path, env=child_env())
    print(f"created W&B sweep {target}; submitted job array {job} ({tasks} agents x {count} runs), script {path}, "
          f"logs {log_dir}/{cfg.launcher.job_name}-{job}_<k>.out")
    return 0
