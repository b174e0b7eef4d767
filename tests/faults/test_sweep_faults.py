"""`dtl sweep` under faults: a point whose training fails is retried by the same command; a sweep killed while it
records a finished point completes on the same command, the point's record whole and its training not redone."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from fault_helpers import dtl, finish, run_env

pytestmark = pytest.mark.slow  # real `dtl` launches, ~20-60 s each

FAST = ["experiment=baseline_demo", "debug=fast", "data.build_demo=false", "trainer.max_steps=2",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "callbacks.blendshape_figure=null",
        "callbacks.progress_bar=null", "trainer.accelerator=cpu"]
ONE_POINT = {"method": "grid", "metric": {"name": "test/mouth_error", "goal": "minimize"},
              "parameters": {"model": {"parameters": {"net": {"parameters": {"hidden": {"values": [16]}}}}},
                             "seed": {"values": [1]}}}


def train_rows(run_dir, attempt: int) -> list[dict]:
    path = run_dir / "csv" / f"attempt_{attempt}" / "metrics.csv"
    with open(path) as f:
        return [r for r in csv.DictReader(f) if r.get("train/loss")]


def test_a_failed_point_is_retried_and_a_kill_while_recording_it_done_loses_nothing(tiny_corpus, tmp_path):
    file = tmp_path / "one.yaml"
    file.write_text(yaml.safe_dump(ONE_POINT))
    args = [str(file), "--sweep-id", "faulty", *FAST, f"data.corpus_dir={tiny_corpus}"]
    sweep_dir = tmp_path / "outputs" / "sweeps" / "faulty"
    state_file = sweep_dir / "runs" / "faulty-0.json"
    run_dir = tmp_path / "outputs" / "baseline_demo" / "faulty-0"

    # the point's `dtl train` (which inherits DTL_FAULT) is killed after its first step: recorded as failed
    code, out = finish(dtl("sweep", args, run_env(tmp_path, "after_step:kill:1")))
    assert code != 0 and json.loads(state_file.read_text())["state"] == "failed", out

    # retried; this time the sweep is killed before renaming the point's `done` record (its second state write
    # in this process, after `running`)
    code, out = finish(dtl("sweep", args, run_env(tmp_path, "before_rename:kill:faulty-0.json#2")))
    assert code == -9, out
    assert json.loads(state_file.read_text())["state"] == "running"  # the previous record, whole
    assert len(train_rows(run_dir, 1)) > 0

    code, out = finish(dtl("sweep", args, run_env(tmp_path)))
    assert code == 0, out
    assert json.loads(state_file.read_text())["state"] == "done"
    assert train_rows(run_dir, 2) == []  # resumed at its last step: nothing trained again
