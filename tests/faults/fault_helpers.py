"""Helpers of the fault tests: a tiny `dtl train` as a real process, and waiting for a process to freeze itself."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from dtl_foundation.faults import FAULT_ENV

REPO = Path(__file__).resolve().parents[2]


def tiny_run_args(corpus: Path, run_id: str, steps: int, *extra: str) -> list[str]:
    return ["experiment=baseline_demo", f"run_id={run_id}", f"data.corpus_dir={corpus}", "data.build_demo=false",
            "data.batch_size=4", f"trainer.max_steps={steps}", "trainer.check_val_every_n_epoch=10",
            "callbacks.last_checkpoint.every_n_train_steps=10", "trainer.accelerator=cpu", "test=false", *extra]


def run_env(tmp_path: Path, fault: str | None = None) -> dict[str, str]:
    env = dict(os.environ, DTL_OUTPUT_ROOT=str(tmp_path / "outputs"), DTL_CACHE_DIR=str(tmp_path / "cache"),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("WANDB_SERVICE", None)  # each launch gets its own W&B service, as separate jobs do
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return env


def dtl(command: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "experiments.cli", command, *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, timeout: float = 400) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def wait_until_stopped(proc: subprocess.Popen, timeout: float = 240) -> None:
    """Until `proc` froze itself (DTL_FAULT=...:stop); fails with its output when it ended instead."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
            return
        time.sleep(0.01)
    raise AssertionError(f"the process did not reach its stop point:\n{proc.stdout.read()}")


@contextmanager
def small_tmpfs(directory: Path, size: str = "64m") -> Iterator[Path]:
    """A real, small file system at `directory` (created), unmounted after; mounting needs root, as CI runs."""
    if os.geteuid() != 0:
        pytest.skip("a real full disk needs a tmpfs, and mounting one needs root (CI runs the tests as root)")
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], check=True)
    try:
        yield directory
    finally:
        subprocess.run(["umount", "--lazy", str(directory)], check=True)


def fill_up(directory: Path) -> Path:
    """Take every free byte of `directory`'s file system with one file (delete it to free them again)."""
    filler = directory / "filler"
    free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY)
    try:
        os.posix_fallocate(fd, 0, free)
    finally:
        os.close(fd)
    assert os.statvfs(directory).f_bavail == 0
    return filler
