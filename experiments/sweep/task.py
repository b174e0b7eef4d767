"""One point of a sweep, trained in this process: what a Slurm array task or a W&B agent runs.

  python -m experiments.sweep.task array-task SWEEP_DIR [overrides]   SLURM_ARRAY_TASK_ID picks the run from
                                                                      SWEEP_DIR/points.json
  python -m experiments.sweep.task agent-run [overrides]              started by `wandb agent`: the point comes
                                                                      from WANDB_SWEEP_PARAM_PATH, the run id from
                                                                      WANDB_RUN_ID, the sweep from WANDB_SWEEP_ID

Training runs in this process, not a child, so that Lightning's SIGUSR1 handler is the one Slurm signals: it saves
and requeues the task, and the requeued task resumes the same run directory. Where Lightning starts the DDP ranks
of a node itself, ranks 1..N-1 come back here with the training's overrides (see `main`).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import yaml

from dtl_foundation.atomic_files import atomic_write_text
from dtl_foundation.run_layout import RunLayout
from dtl_foundation.slurm import is_rank_zero
from experiments.sweep.engine import plain
from experiments.sweep.runs import plan_run
from experiments.sweep.store import SweepStore
from experiments.train import run_train


def train_in_process(overrides: list[str]) -> int:
    """`dtl train` here; its exit status (Hydra turns a failure into SystemExit(1))."""
    try:
        return run_train(overrides)
    except SystemExit as e:
        return 0 if e.code in (None, 0) else (e.code if isinstance(e.code, int) else 1)


def array_task(sweep_dir: Path, extra: list[str]) -> int:
    """Train run SLURM_ARRAY_TASK_ID of the sweep, recording running, then done or failed."""
    if "SLURM_ARRAY_TASK_ID" not in os.environ:
        print("sweep_task array-task: SLURM_ARRAY_TASK_ID is unset (this runs inside a Slurm job array)",
              file=sys.stderr)
        return 2
    index = int(os.environ["SLURM_ARRAY_TASK_ID"])
    store = SweepStore(sweep_dir)
    run = store.run(index)
    task = f"{os.environ.get('SLURM_ARRAY_JOB_ID', '?')}_{index}"
    where = {"slurm_job": task, "restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
             "run_dir": run.run_dir}
    if is_rank_zero():
        store.set_state(run.run_id, "running", pid=os.getpid(), **where)

    def on_sigterm(signum, frame):
        # Slurm requeued (after Lightning's SIGUSR1 save) or cancelled the task: not done, so a later
        # `dtl sweep` sees it queued again or resubmits it. Then die as SIGTERM would have.
        if is_rank_zero():
            store.set_state(run.run_id, "pending", reason="SIGTERM: Slurm requeued or cancelled the task", **where)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)  # Lightning keeps it, calling it after its own SIGTERM handlers
    try:
        code = train_in_process(run.overrides + extra)
    except BaseException:
        if is_rank_zero():
            store.set_state(run.run_id, "failed", returncode=None, **where)
        raise
    if is_rank_zero():
        store.set_state(run.run_id, "done" if code == 0 else "failed", returncode=code, **where)
    return code


def agent_run(fixed: list[str]) -> int:
    """Train the point a W&B agent handed out, as run <sweep id>-<W&B run id> whose W&B id is the agent's."""
    missing = [v for v in ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH") if not os.environ.get(v)]
    if missing:
        print(f"sweep_task agent-run: {', '.join(missing)} unset (`wandb agent` starts this)", file=sys.stderr)
        return 2
    sweep_id, wandb_run = os.environ["WANDB_SWEEP_ID"], os.environ["WANDB_RUN_ID"]
    param_path = Path(os.environ["WANDB_SWEEP_PARAM_PATH"])
    entries = yaml.safe_load(param_path.read_text()) or {}
    params = {k: plain(v["value"]) for k, v in entries.items() if k != "wandb_version"}
    run = plan_run(sweep_id, 0, params, ["logger.wandb.offline=false", *fixed], f"W&B sweep {sweep_id}",
                   suffix=wandb_run)
    id_file = RunLayout(Path(run.run_dir)).wandb_id_file
    if is_rank_zero() and not id_file.exists():  # the run directory's W&B id is the run the agent created
        atomic_write_text(id_file, wandb_run + "\n")
    return train_in_process(run.overrides)


def main(argv: list[str]) -> int:
    if argv[:1] == ["array-task"] and len(argv) >= 2:
        return array_task(Path(argv[1]), argv[2:])
    if argv[:1] == ["agent-run"]:
        return agent_run(argv[1:])
    if os.environ.get("LOCAL_RANK", "0") != "0":
        # A DDP rank that Lightning started on this node: it runs `python -m <this module> <argv[1:]>` with
        # LOCAL_RANK set, and argv is then the training's overrides (run_train's), run id included.
        return train_in_process(argv)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
