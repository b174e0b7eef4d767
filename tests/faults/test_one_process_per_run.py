"""Two `dtl train` on one run id: the second stops at once naming the first, which finishes untouched."""

from __future__ import annotations

import json
import signal
import time

import pytest
import torch

from dtl_foundation.directory_lock import HOLDER_FILE
from fault_helpers import dtl, finish, run_env, tiny_run_args, wait_until_stopped

pytestmark = pytest.mark.slow  # real `dtl` launches, ~20-60 s each


def test_a_second_dtl_train_on_a_held_run_stops_at_once_and_the_first_finishes(tiny_corpus, tmp_path):
    args = tiny_run_args(tiny_corpus, "dup", steps=60)
    run_dir = tmp_path / "outputs" / "baseline_demo" / "dup"

    first = dtl("train", args, run_env(tmp_path, "after_step:stop:20"))  # frozen mid-run until SIGCONT
    wait_until_stopped(first)
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    holder = json.loads((run_dir / HOLDER_FILE).read_text())
    assert holder["pid"] == first.pid and "run_id=dup" in holder["command"]

    started = time.time()
    code_second, out_second = finish(dtl("train", args, run_env(tmp_path)), timeout=120)
    refused_in = time.time() - started
    first.send_signal(signal.SIGCONT)
    code_first, out_first = finish(first)

    assert code_second != 0, out_second
    assert f"in use by pid {first.pid} on " in out_second and str(run_dir) in out_second
    assert refused_in < 60  # at the import and config composition, not after training
    assert code_first == 0, out_first
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 60
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]  # no last-v1.ckpt
    assert [p.name for p in (run_dir / "meta").iterdir()] == ["attempt_0"]  # the second wrote no attempt
    wandb_id = (run_dir / "wandb_id").read_text().strip()
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith(wandb_id), runs
    assert not (run_dir / HOLDER_FILE).exists()  # released at the end
