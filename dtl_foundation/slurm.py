"""Where this process runs: its Slurm job id, whether it is rank 0 of a multi-process launch; and a requeue of
this Slurm job when SIGUSR1 warns of the time limit (`#SBATCH --signal=SIGUSR1@S`), for jobs whose work resumes by
itself when it starts again (`dtl data extract`); Lightning does the same for `dtl train`."""

from __future__ import annotations

import logging
import os
import signal
import subprocess

log = logging.getLogger(__name__)


def slurm_job_id() -> str | None:
    """This job's id as scontrol names it: <array job>_<task> for an array task, else the job id; None outside."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def is_rank_zero() -> bool:
    """Rank 0 of a launch by Slurm (SLURM_PROCID), torchrun or Lightning (RANK, LOCAL_RANK, NODE_RANK); also a
    process outside any launch. Read from the environment at each call: Lightning sets it for the ranks it starts."""
    return all(os.environ.get(v, "0") == "0" for v in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK"))


def requeue_on_sigusr1() -> bool:
    """Install the handler when running under Slurm; whether it was installed."""
    job = slurm_job_id()
    if job is None:
        return False

    def requeue(signum, frame) -> None:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
        if done.returncode == 0:
            log.warning("SIGUSR1: requeued Slurm job %s; the same command resumes where this one stops", job)
        else:
            log.error("SIGUSR1: `scontrol requeue %s` failed: %s", job, done.stderr.strip())

    signal.signal(signal.SIGUSR1, requeue)
    return True
