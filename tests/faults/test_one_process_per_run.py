"""Two `dtl train` on one run id: the second stops at once naming the first, which finishes untouched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from dtl_foundation.directory_lock import HOLDER_FILE

REPO = Path(__file__).resolve().parents[2]


def tiny_run_args(corpus: Path, run_id: str, steps: int) -> list[str]:
    return ["experiment=baseline_demo", f"run_id={run_id}", f"data.corpus_dir={corpus}", "data.build_demo=false",
            "data.batch_size=4", f"trainer.max_steps={steps}", "trainer.check_val_every_n_epoch=10",
            "callbacks.last_checkpoint.every_n_train_steps=10", "trainer.accelerator=cpu", "test=false"]


def run_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, DTL_OUTPUT_ROOT=str(tmp_path / "outputs"), DTL_CACHE_DIR=str(tmp_path / "cache"),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)
    env.pop("WANDB_SERVICE", None)  # each launch gets its own W&B service, as separate jobs do
    return env


def wait_until_stopped(proc: subprocess.Popen, timeout: float = 240) -> None:
    """Until `proc` froze itself (DTL_FAULT=...:stop); fails with its output when it ended instead."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
            return
        time.sleep(0.05)
    raise AssertionError(f"the process did not reach its stop point:\n{proc.stdout.read()}")


def dtl_train(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "experiments.cli", "train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_a_second_dtl_train_on_a_held_run_stops_at_once_and_the_first_finishes(tiny_corpus, tmp_path):
    args = tiny_run_args(tiny_corpus, "dup", steps=60)
    run_dir = tmp_path / "outputs" / "baseline_demo" / "dup"

    first = dtl_train(args, run_env(tmp_path, DTL_FAULT="after_step:stop:20"))  # frozen mid-run until SIGCONT
    wait_until_stopped(first)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    holder = json.loads((run_dir / HOLDER_FILE).read_text())
    assert holder["pid"] == first.pid and "run_id=dup" in holder["command"]

    started = time.time()
    second = dtl_train(args, run_env(tmp_path))
    out_second, _ = second.communicate(timeout=120)
    refused_in = time.time() - started
    first.send_signal(signal.SIGCONT)
    out_first, _ = first.communicate(timeout=400)

    assert second.returncode != 0, out_second
    assert f"in use by pid {first.pid} on " in out_second and str(run_dir) in out_second
    assert refused_in < 60  # at the import and config composition, not after training
    assert first.returncode == 0, out_first
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 60
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]  # no last-v1.ckpt beside it
    assert [p.name for p in (run_dir / "meta").iterdir()] == ["attempt_0"]  # the second wrote no attempt
    wandb_id = (run_dir / "wandb_id").read_text().strip()
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith(wandb_id), runs
    assert not (run_dir / HOLDER_FILE).exists()  # released at the end
