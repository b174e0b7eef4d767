"""The paper's ablation table end to end: configs/sweep/ablation.yaml as one Slurm job array on the local Slurm
(`dtl sweep --slurm`, the local sweep engine), then `dtl compare --group` over its offline W&B runs, its
markdown table, and the HTML report rendered by headless Chromium."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from browser import screenshot
from experiments.sweep import command as sweep
from experiments.compare.command import main as compare
from experiments.compare.report_html import TABLE_BACKGROUND
from experiments.compare.table import Cell, format_cell
from experiments.compare.summary import final_metrics
from experiments.sweep.store import SweepStore

REPO = Path(__file__).resolve().parents[1]
ABLATION = REPO / "configs" / "sweep" / "ablation.yaml"
# Every variant of the table for two optimizer steps: the machinery, not the science.
TINY = ["debug=fast", "data.build_demo=false", "trainer.max_steps=2", "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1", "callbacks.progress_bar=null", "launcher.cpus_per_task=1",
        "launcher.mem_gb=3"]


def wait_for_array(job: str, tasks: int, env: dict[str, str], timeout: float) -> dict[str, str]:
    import subprocess

    deadline, states = time.time() + timeout, {}
    while time.time() < deadline:
        out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, env=env).stdout
        states = dict(re.findall(r"JobId=\d+ ArrayJobId=\d+ ArrayTaskId=(\d+).*?JobState=(\w+)", out, flags=re.S))
        if len(states) == tasks and all(s in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT") for s in states.values()):
            break
        time.sleep(2)
    return states


@pytest.mark.slow
def test_ablation_sweep_as_a_slurm_array_then_its_comparison_table(tiny_corpus, tmp_path, local_slurm, monkeypatch,
                                                                    capsys):
    spec = yaml.safe_load(ABLATION.read_text())
    variants = spec["parameters"]["experiment"]["values"]
    seeds = spec["parameters"]["seed"]["values"]
    outputs = tmp_path / "outputs"
    monkeypatch.setenv("DTL_OUTPUT_ROOT", str(outputs))
    monkeypatch.setenv("DTL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SLURM_CONF", local_slurm["SLURM_CONF"])
    monkeypatch.chdir(REPO)

    args = [str(ABLATION), "--slurm", "--sweep-id", "ablation", *TINY, f"data.corpus_dir={tiny_corpus}"]
    assert sweep.main(args) == 0, capsys.readouterr()
    store = SweepStore(outputs / "sweeps" / "ablation")
    [submission] = json.loads((store.slurm_dir / "submissions.json").read_text())
    total = len(variants) * len(seeds)
    assert f"#SBATCH --array=0-{total - 1}" in Path(submission["script"]).read_text()
    states = wait_for_array(str(submission["job"]), total, local_slurm, timeout=900)
    logs = {t: (store.slurm_dir / f"ablation-{submission['job']}_{t}.out").read_text()[-2000:]
            for t, s in states.items() if s != "COMPLETED"}
    assert sorted(states.values()) == ["COMPLETED"] * total, logs

    runs = store.runs()
    assert sorted((r.params["experiment"], r.params["seed"]) for r in runs) == sorted(
        (v, s) for v in variants for s in seeds)
    for run in runs:
        assert store.state(run.run_id)["state"] == "done"
        assert "test/mouth_error" in final_metrics(Path(run.run_dir))

    capsys.readouterr()
    report = tmp_path / "report"
    code = compare(["--group", "ablation", "--wandb-dir", str(outputs), "--metric", "test/mouth_error",
                    "--baseline", "baseline_demo", "--out", str(report)])
    out = capsys.readouterr().out
    assert code == 0, out
    for variant in variants:
        values = [final_metrics(Path(r.run_dir))["test/mouth_error"] for r in runs if r.params["experiment"] == variant]
        cell = format_cell(Cell(values), len(values))  # the table's own number format (small stds in e-notation)
        assert cell in out, (variant, cell, out)
    table = (report / "report.md").read_text().split("\n\n")[2]  # title, summary line, the comparison table
    rows = table.splitlines()[2:]
    assert [row.split(" | ")[0].lstrip("| ") for row in rows] == ["baseline_demo (baseline)", *variants[1:]]
    assert all(f"| {len(seeds)} | 1, 2, 3 |" in row for row in rows)  # every variant over the same three seeds
    assert sum("★" in row for row in rows) == 1  # one best variant

    shot = screenshot(report / "report.html", tmp_path / "report.png")
    colour = np.array([int(TABLE_BACKGROUND[i:i + 2], 16) for i in (1, 3, 5)])
    table = np.all(np.abs(shot - colour) <= 2, axis=-1)
    assert table.sum() > 20_000, "the ablation table did not render in Chromium"
    rows_px = np.nonzero(table)[0]
    assert rows_px.max() - rows_px.min() > 80  # four variant rows
