"""The local single-node Slurm the cluster tests run against: it starts, runs the project's Python, fakes GPUs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def wait_for(job_id: str, env: dict[str, str], timeout: float = 120) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, env=env).stdout
        state = next((w.split("=", 1)[1] for w in out.split() if w.startswith("JobState=")), "")
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return state
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} did not finish in {timeout} s")


def sbatch(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def test_a_job_runs_the_project_python(local_slurm, tmp_path):
    log = tmp_path / "job-%j.out"
    job = sbatch(["-o", str(log), "--wrap",
                  f"{sys.executable} -c 'from datamodules.arkit import MOUTH_INDICES; print(len(MOUTH_INDICES))'"],
                 local_slurm)
    assert wait_for(job, local_slurm) == "COMPLETED"
    assert (tmp_path / f"job-{job}.out").read_text().strip() == "27"


def test_fake_gpus_are_allocated_per_task(local_slurm, tmp_path):
    log = tmp_path / "gpu-%j.out"
    job = sbatch(["-o", str(log), "--gres=gpu:2", "--nodes=1", "--ntasks-per-node=2", "--wrap",
                  "srun bash -c 'echo rank=$SLURM_PROCID gpus=$SLURM_JOB_GPUS'"], local_slurm)
    assert wait_for(job, local_slurm) == "COMPLETED"
    lines = sorted((tmp_path / f"gpu-{job}.out").read_text().split())
    assert lines == ["gpus=0,1", "gpus=0,1", "rank=0", "rank=1"]
