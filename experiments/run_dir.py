"""The one place that decides a run's directory, its attempt number, which checkpoint to resume, and its W&B id.

A run directory `outputs/<experiment>/<run_id>` never changes across restarts or Slurm requeues; what it holds is
described by dtl_foundation.run_layout.RunLayout.
"""

from __future__ import annotations

import logging
import os
import secrets
import shlex
import subprocess
import sys
import time
import zipfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig, OmegaConf

from dtl_foundation.atomic_files import atomic_write_text
from dtl_foundation.directory_lock import hold_directory
from dtl_foundation.run_layout import RunLayout, is_zero_checkpoint
from dtl_foundation.slurm import is_rank_zero, slurm_job_id

log = logging.getLogger(__name__)
ATTEMPT_ENV = "DTL_RUN_ATTEMPT"  # rank 0 passes its attempt number to the ranks it starts


def resolve_run_id(explicit: str | None = None) -> str:
    """The command line's run_id, else the Slurm job (array-task aware, stable across requeues), else a new id."""
    if explicit:
        return explicit
    job = slurm_job_id()
    if job:
        return f"slurm-{job}"
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def is_complete_checkpoint(path: Path) -> bool:
    """A torch checkpoint is a zip archive (a truncated one has no readable central directory); DeepSpeed's is a
    directory whose `latest` names a folder of model and optimizer states."""
    if path.is_dir():
        return is_zero_checkpoint(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return len(archive.namelist()) > 0
    except (OSError, zipfile.BadZipFile):
        return False


def saved_at(path: Path) -> int:
    """DeepSpeed rewrites `latest` at the end of every save; a file checkpoint is its own stamp."""
    return (path / "latest").stat().st_mtime_ns if path.is_dir() else path.stat().st_mtime_ns


def find_resume_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint in the run directory: checkpoints/*.ckpt or a requeue's hpc_ckpt_*.ckpt."""
    for path in sorted(RunLayout(run_dir).resume_candidates(), key=saved_at, reverse=True):
        if is_complete_checkpoint(path):
            return path
        log.warning("ignoring incomplete checkpoint %s", path)
    return None


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"git unavailable: {e}\n"


@dataclass
class RunState:
    run_dir: Path
    attempt: int
    resume_checkpoint: Path | None
    wandb_id: str


def _wandb_id(run_dir: Path) -> str:
    path = RunLayout(run_dir).wandb_id_file
    if path.exists():
        return path.read_text().strip()
    wandb_id = secrets.token_hex(4)
    if is_rank_zero():
        atomic_write_text(path, wandb_id + "\n")
    return wandb_id


def save_metadata(cfg: DictConfig, attempt_dir: Path) -> None:
    """Resolved config, command line, environment, git commit and diff of this launch."""
    atomic_write_text(attempt_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    atomic_write_text(attempt_dir / "command.txt", shlex.join(sys.argv) + "\n")
    atomic_write_text(attempt_dir / "git.txt", _git("rev-parse", "HEAD") + _git("status", "--short"))
    atomic_write_text(attempt_dir / "git.diff", _git("diff", "HEAD"))
    env = {k: v for k, v in os.environ.items() if k.startswith(("SLURM_", "WANDB_", "DTL_", "CUDA_VISIBLE"))}
    atomic_write_text(attempt_dir / "env.txt", "".join(f"{k}={v}\n" for k, v in sorted(env.items())))


def prepare_run(cfg: DictConfig) -> RunState:
    """Create or reopen the run directory and decide what this launch resumes from."""
    run_dir = Path(cfg.paths.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("ckpt_path"):
        resume = Path(cfg.ckpt_path)
        if not resume.exists():
            raise FileNotFoundError(f"ckpt_path={resume}: no such checkpoint")
        if not is_complete_checkpoint(resume):
            raise ValueError(f"ckpt_path={resume}: not a complete checkpoint (a truncated file, or a DeepSpeed "
                             "directory without its `latest` tag and states)")
    else:
        resume = find_resume_checkpoint(run_dir) if cfg.get("resume", True) else None
    if is_rank_zero():
        attempt = RunLayout(run_dir).next_attempt()
        os.environ[ATTEMPT_ENV] = str(attempt)  # inherited by the ranks Lightning starts from this process
    elif ATTEMPT_ENV in os.environ:  # such a rank: rank 0 has already created this attempt's folder
        attempt = int(os.environ[ATTEMPT_ENV])
    else:  # a rank Slurm or torchrun started
        attempt = RunLayout(run_dir).next_attempt()
    state = RunState(run_dir=run_dir, attempt=attempt, resume_checkpoint=resume, wandb_id=_wandb_id(run_dir))
    if is_rank_zero():
        save_metadata(cfg, RunLayout(run_dir).attempt_meta(attempt))
    log.info("run directory %s (attempt %d); %s; W&B id %s", run_dir, attempt,
             f"resuming from {resume}" if resume else "starting fresh", state.wandb_id)
    return state


@contextmanager
def holding_run(cfg: DictConfig) -> Iterator[RunState]:
    """prepare_run while this process holds the run directory: a second launch on the same run stops at once
    (DirectoryHeld names the holder) before it writes anything there. Ranks other than 0 belong to rank 0's run."""
    run_dir = Path(cfg.paths.run_dir).resolve()
    with hold_directory(run_dir, what="run directory") if is_rank_zero() else nullcontext():
        if is_rank_zero():  # held: whatever temporary file is here, its writer is gone
            for leftover in RunLayout(run_dir).temporaries():
                log.warning("removing %s, left by a killed write", leftover)
                leftover.unlink()
        yield prepare_run(cfg)
