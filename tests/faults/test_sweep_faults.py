"""A `dtl sweep` killed while it records a finished point: the same command completes, the point's record is whole
and its training is not redone."""

from __future__ import annotations

import csv
import json

import yaml

from fault_helpers import dtl, finish, run_env

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


def test_a_kill_while_recording_a_done_point_then_the_same_sweep_completes(tiny_corpus, tmp_path):
    file = tmp_path / "two.yaml"
    file.write_text(yaml.safe_dump(ONE_POINT))
    args = [str(file), "--sweep-id", "faulty", *FAST, f"data.corpus_dir={tiny_corpus}"]
    sweep_dir = tmp_path / "outputs" / "sweeps" / "faulty"
    # the third write of point 0's state file is `done` (after `pending` and `running`): killed before its rename
    code, out = finish(dtl("sweep", args, run_env(tmp_path, "before_rename:kill:faulty-0.json#3")))
    assert code == -9, out
    state = json.loads((sweep_dir / "runs" / "faulty-0.json").read_text())  # the previous record, whole
    assert state["state"] == "running"
    run_dir = tmp_path / "outputs" / "baseline_demo" / "faulty-0"
    assert len(train_rows(run_dir, 0)) > 0

    code, out = finish(dtl("sweep", args, run_env(tmp_path)))
    assert code == 0, out
    assert json.loads((sweep_dir / "runs" / "faulty-0.json").read_text())["state"] == "done"
    assert train_rows(run_dir, 1) == []  # resumed at its last step: nothing trained again
