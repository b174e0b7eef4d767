"""One training run interrupted five times, mixed: two SIGUSR1 requeues on the local Slurm, a SIGKILL of the Slurm
job, then launched by hand (the same run id) a SIGKILL inside a checkpoint write and a SIGKILL after a step. It
ends at the requested step with one W&B run and metrics without a gap."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dtl_foundation.directory_lock import HOLDER_FILE
from fault_helpers import REPO, dtl, finish, run_env, tiny_run_args
from test_local_slurm import slurm_state, wait_for

pytestmark = pytest.mark.slow  # six launches of a tiny run, two of them requeued by Slurm

STEPS = 70
# each start of the Slurm job meets the next of these (a fault fires once per process; a resumed start has passed
# the earlier steps): frozen at 15 and at 35 while the test sends SIGUSR1 (Lightning saves and requeues), killed
# after step 52
JOB_FAULTS = "after_step:stop:15,after_step:stop:35,after_step:kill:52"


def stopped_holder(run_dir: Path, env: dict[str, str], not_pid: int | None, timeout: float = 300) -> int:
    """The PID of the run's holder once it froze itself (a new holder, not `not_pid`)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            pid = json.loads((run_dir / HOLDER_FILE).read_text())["pid"]
            if pid != not_pid and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
                return pid
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"no stopped holder of {run_dir}\n{slurm_state(env)}")


def wait_pending(pid: int, signum: int, timeout: float = 60) -> None:
    """Until the stopped process `pid` has signal `signum` pending (it acts on it when continued)."""
    bit = 1 << (signum - 1)
    deadline = time.time() + timeout
    while time.time() < deadline:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
        status = dict(line.split(":", 1) for line in lines if ":" in line)
        if (int(status["SigPnd"], 16) | int(status["ShdPnd"], 16)) & bit:
            return
        time.sleep(0.05)
    raise AssertionError(f"signal {signum} never reached process {pid}")


def train_steps(run_dir: Path, attempt: int) -> list[int]:
    path = run_dir / "csv" / f"attempt_{attempt}" / "metrics.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return [int(row["step"]) for row in csv.DictReader(f) if row.get("train/loss")]


def test_five_mixed_interruptions_end_at_the_requested_step_with_one_wandb_run(local_slurm, tiny_corpus, tmp_path):
    args = tiny_run_args(tiny_corpus, "unused", STEPS, "trainer.log_every_n_steps=1")[1:]
    args = [a for a in args if not a.startswith("run_id=")]
    env = dict(run_env(tmp_path, JOB_FAULTS), SLURM_CONF=local_slurm["SLURM_CONF"])
    submitted = subprocess.run([sys.executable, "-m", "experiments.cli", "submit", "experiment=baseline_demo", *args,
                                "launcher.cpus_per_task=1", "launcher.mem_gb=4"], capture_output=True, text=True,
                               cwd=REPO, env=env, timeout=120)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.split("submitted job ")[1].split(":")[0]
    run_dir = tmp_path / "outputs" / "baseline_demo" / f"slurm-{job}"

    pid = None
    for _ in range(2):  # interruptions 1 and 2: SIGUSR1 as before a time limit, sent by Slurm's scancel
        pid = stopped_holder(run_dir, env, not_pid=pid)
        subprocess.run(["scancel", "--signal=USR1", job], check=True, env=env)
        # slurmd may deliver two signals out of order: a CONT that overtook the USR1 would let the run go on past the
        # step (here the end of an epoch) before saving, and the resumed start would log from another step
        wait_pending(pid, signal.SIGUSR1)
        subprocess.run(["scancel", "--signal=CONT", job], check=True, env=env)
    state = wait_for(job, env, timeout=400)  # interruption 3: the third start is killed after step 52
    log = (tmp_path / "outputs" / "slurm" / f"baseline_demo-{job}.out").read_text()
    info = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, env=env).stdout
    assert state == "FAILED" and "Restarts=2" in info, f"{state}\n{info}\n{log[-3000:]}"
    assert len(list(run_dir.glob("hpc_ckpt_*.ckpt"))) == 2

    # the same run continued by hand: interruption 4 inside the step-60 checkpoint write, 5 after step 65
    by_hand = tiny_run_args(tiny_corpus, f"slurm-{job}", STEPS, "trainer.log_every_n_steps=1")
    for fault in ("mid_write:kill:last.ckpt", "after_step:kill:65", None):
        code, out = finish(dtl("train", by_hand, run_env(tmp_path, fault)))
        assert code == (-signal.SIGKILL if fault else 0), out

    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == STEPS
    assert sorted(p.name for p in (run_dir / "meta").iterdir()) == [f"attempt_{k}" for k in range(6)]
    wandb_id = (run_dir / "wandb_id").read_text().strip()
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 6 and all(r.name.endswith(f"-{wandb_id}") for r in runs), runs

    # metrics: each start logs on from where the previous one's checkpoint left it, together every step once or
    # more (a kill loses the steps after the last checkpoint: they are trained and logged again)
    logged = [train_steps(run_dir, k) for k in range(6)]
    assert all(steps == list(range(steps[0], steps[-1] + 1)) for steps in logged), logged
    assert [steps[0] for steps in logged] == [0, 15, 35, 50, 50, 60], logged
    assert all(later[0] <= earlier[-1] + 1 for earlier, later in zip(logged, logged[1:])), logged
    assert logged[-1][-1] == STEPS - 1
