"""Chained stages (experiments/sweep/pipeline.py): the lip refiner of each seed trains on that seed's EmoDiff run,
held on the local Slurm by `--dependency=afterok` on exactly that run's array task; a requeued stage resumes; the
same command again submits nothing and writes the comparison once."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from experiments.compare.summary import final_metrics
from experiments.sweep.entry import main as sweep
from experiments.sweep.store import SweepStore

REPO = Path(__file__).resolve().parents[1]
PIPELINE_FILE = REPO / "configs" / "sweep" / "ablation_pipeline.yaml"
CHAIN = {
    "name": "chain",
    "stages": {
        "emodiff": {"sweep": {"method": "grid", "parameters": {
            "experiment": {"value": "emodiff_demo"}, "seed": {"values": [1, 2]},
            "trainer.max_steps": {"value": 60}, "callbacks.last_checkpoint.every_n_train_steps": {"value": 10}}}},
        "lip_refiner": {"sweep": {"method": "grid", "parameters": {
            "experiment": {"value": "lip_refiner_demo"}, "model.source": {"value": "mixed"},
            "seed": {"values": [1, 2]}, "trainer.max_steps": {"value": 2}}},
            "inputs": {"model.emodiff_run": {"stage": "emodiff", "match": ["seed"]}}},
    },
    "compare": {"baseline": "emodiff_demo", "metrics": ["test/mouth_error"]},
}
TINY = ["debug=fast", "data.build_demo=false", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
        "callbacks.progress_bar=null", "launcher.cpus_per_task=1", "launcher.mem_gb=3"]


def job_field(job: str, name: str, env: dict[str, str]) -> str:
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, env=env).stdout
    return next((w.split("=", 1)[1] for w in out.split() if w.startswith(f"{name}=")), "")


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise TimeoutError(what)
        time.sleep(1)


def test_the_ablation_pipeline_plans_every_row_and_the_refiner_of_each_seed_reads_that_seeds_emodiff(tmp_path,
                                                                                                    monkeypatch,
                                                                                                    capsys):
    monkeypatch.setenv("DTL_OUTPUT_ROOT", str(tmp_path / "outputs"))
    monkeypatch.chdir(REPO)
    assert sweep([str(PIPELINE_FILE), "--dry-run", "--sweep-id", "ablation"]) == 0
    out = capsys.readouterr().out
    refiners = [line for line in out.splitlines() if "lip_refiner_demo" in line]
    assert len(refiners) == 3 and out.count("experiment=") == 1 + 12 + 3
    emodiff = {line.split("seed=")[1].split()[0]: line.split(":")[0].split()[-1] for line in out.splitlines()
               if "experiment=emodiff_demo " in line}
    for line in refiners:
        seed = line.split("seed=")[1].split()[0]
        assert f"model.emodiff_run={tmp_path}/outputs/emodiff_demo/{emodiff[seed]} " in line
        assert "judge-0/checkpoints/best.ckpt" in line


def test_an_input_that_matches_no_run_names_the_file_and_the_stage(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DTL_OUTPUT_ROOT", str(tmp_path / "outputs"))
    broken = dict(CHAIN, stages=dict(CHAIN["stages"]))
    broken["stages"]["lip_refiner"] = dict(CHAIN["stages"]["lip_refiner"], inputs={
        "model.emodiff_run": {"stage": "emodiff", "match": ["seed"], "where": {"experiment": "baseline_demo"}}})
    file = tmp_path / "broken.yaml"
    file.write_text(yaml.safe_dump(broken))
    assert sweep([str(file), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{file}: stages.lip_refiner.inputs.model.emodiff_run: 0 runs of stage emodiff match seed=1" in err


@pytest.mark.slow
def test_chained_stages_on_slurm_wait_read_resume_and_rerun_as_a_no_op(tiny_corpus, tmp_path, local_slurm,
                                                                      monkeypatch, capsys):
    outputs = tmp_path / "outputs"
    monkeypatch.setenv("DTL_OUTPUT_ROOT", str(outputs))
    monkeypatch.setenv("DTL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SLURM_CONF", local_slurm["SLURM_CONF"])
    monkeypatch.chdir(REPO)
    file = tmp_path / "chain.yaml"
    file.write_text(yaml.safe_dump(CHAIN))
    args = [str(file), "--slurm", "--sweep-id", "chain", *TINY, f"data.corpus_dir={tiny_corpus}"]
    assert sweep(args) == 0, capsys.readouterr()
    emodiff = SweepStore(outputs / "sweeps" / "chain-emodiff")
    refiner = SweepStore(outputs / "sweeps" / "chain-lip_refiner")
    [trained] = json.loads((emodiff.slurm_dir / "submissions.json").read_text())
    held = json.loads((refiner.slurm_dir / "submissions.json").read_text())
    assert sorted(s["indices"] for s in held) == [[0], [1]]  # one job per seed, each held by its own EmoDiff
    jobs = {s["indices"][0]: s["job"] for s in held}
    scripts = {s["indices"][0]: Path(s["script"]).read_text() for s in held}
    for k, job in jobs.items():
        assert f"#SBATCH --dependency=afterok:{trained['job']}_{k}\n" in scripts[k]
        assert job_field(job, "Dependency", local_slurm).startswith(f"afterok:{trained['job']}_{k}")
        assert job_field(job, "JobState", local_slurm) == "PENDING"

    # requeue EmoDiff seed 1 mid-training: it resumes its run directory, and its refiner keeps waiting for it
    first = emodiff.run(0)
    wait_until(lambda: (Path(first.run_dir) / "checkpoints" / "last.ckpt").exists(), 400,
               f"no checkpoint in {first.run_dir}")
    subprocess.run(["scancel", "--signal=USR1", f"{trained['job']}_0"], check=True, env=local_slurm)
    terminal = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY")
    wait_until(lambda: all(job_field(j, "JobState", local_slurm) in terminal for j in jobs.values()), 900,
               "the refiner jobs did not finish")
    logs = {r.run_id: (refiner.slurm_dir / f"chain-lip_refiner-{jobs[r.index]}_{r.index}.out").read_text()[-2000:]
            for r in refiner.runs()}
    assert [job_field(j, "JobState", local_slurm) for j in jobs.values()] == ["COMPLETED"] * 2, logs
    assert job_field(f"{trained['job']}_0", "Restarts", local_slurm) == "1"
    assert (Path(first.run_dir) / "meta" / "attempt_1").is_dir() and list(Path(first.run_dir).glob("hpc_ckpt_*"))

    for run in refiner.runs():
        upstream = emodiff.runs()[run.index]
        assert upstream.params["seed"] == run.params["seed"]
        config = yaml.safe_load((Path(run.run_dir) / "meta" / "attempt_0" / "config.yaml").read_text())
        assert config["model"]["emodiff_run"] == upstream.run_dir  # it read that seed's EmoDiff run
        started = (Path(run.run_dir) / "meta" / "attempt_0").stat().st_mtime
        assert started > (Path(upstream.run_dir) / "checkpoints" / "last.ckpt").stat().st_mtime  # after it finished
        metrics = final_metrics(Path(run.run_dir))
        assert "test/source/mouth_error" in metrics and "test/boundary_velocity_ratio" in metrics

    capsys.readouterr()
    assert sweep(args) == 0  # everything done: nothing submitted, the comparison written
    out = capsys.readouterr().out
    assert "nothing to submit" in out and (outputs / "sweeps" / "chain" / "report" / "report.md").is_file()
    report = (outputs / "sweeps" / "chain" / "report" / "report.md").read_text()
    assert "lip_refiner_demo" in report and "emodiff_demo (baseline)" in report
    assert sweep(args) == 0  # and once more: a no-op
    assert "comparison up to date" in capsys.readouterr().out
    assert len(json.loads((emodiff.slurm_dir / "submissions.json").read_text())) == 1
    assert len(json.loads((refiner.slurm_dir / "submissions.json").read_text())) == 2
    assert not list(outputs.glob("*/*/meta/attempt_2")) and len(list(outputs.glob("*/*/meta/attempt_1"))) == 1


def one_seed(chain: dict) -> dict:
    """The chain with one seed per stage and two steps each: the machinery, not the science."""
    stages = {}
    for name, stage in chain["stages"].items():
        parameters = dict(stage["sweep"]["parameters"], seed={"values": [1]}, **{"trainer.max_steps": {"value": 2}})
        parameters.pop("callbacks.last_checkpoint.every_n_train_steps", None)
        stages[name] = dict(stage, sweep=dict(stage["sweep"], parameters=parameters))
    return dict(chain, stages=stages)


@pytest.mark.slow
def test_here_the_stages_run_in_order_and_the_same_command_is_then_a_no_op(tiny_corpus, tmp_path, monkeypatch,
                                                                           capsys):
    outputs = tmp_path / "outputs"
    monkeypatch.setenv("DTL_OUTPUT_ROOT", str(outputs))
    monkeypatch.setenv("DTL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)
    file = tmp_path / "chain.yaml"
    file.write_text(yaml.safe_dump(one_seed(CHAIN)))
    args = [str(file), "--sweep-id", "here", *TINY, f"data.corpus_dir={tiny_corpus}", "trainer.accelerator=cpu"]
    assert sweep(args) == 0, capsys.readouterr()
    emodiff = SweepStore(outputs / "sweeps" / "here-emodiff")
    refiner = SweepStore(outputs / "sweeps" / "here-lip_refiner")
    [trained], [refined] = emodiff.runs(), refiner.runs()
    assert emodiff.state(trained.run_id)["state"] == refiner.state(refined.run_id)["state"] == "done"
    config = yaml.safe_load((Path(refined.run_dir) / "meta" / "attempt_0" / "config.yaml").read_text())
    assert config["model"]["emodiff_run"] == trained.run_dir
    assert (Path(refined.run_dir) / "meta" / "attempt_0").stat().st_mtime > \
        (Path(trained.run_dir) / "checkpoints" / "last.ckpt").stat().st_mtime
    assert (outputs / "sweeps" / "here" / "report" / "report.md").is_file()

    capsys.readouterr()
    assert sweep(args) == 0
    out = capsys.readouterr().out
    assert out.count("1 of 1 runs already done") == 2 and "comparison up to date" in out
    assert not list(outputs.glob("*/*/meta/attempt_1"))


@pytest.mark.slow
def test_an_input_file_its_stage_did_not_write_stops_the_stage_that_reads_it(tiny_corpus, tmp_path, monkeypatch,
                                                                             capsys):
    """Two steps of the judge save no best.ckpt (no validation ran): the models stage does not start."""
    outputs = tmp_path / "outputs"
    monkeypatch.setenv("DTL_OUTPUT_ROOT", str(outputs))
    monkeypatch.setenv("DTL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)
    pipeline = yaml.safe_load(PIPELINE_FILE.read_text())
    judge = pipeline["stages"]["judge"]
    judge["sweep"]["parameters"]["trainer.max_steps"] = {"value": 2}
    models = {"sweep": {"method": "grid", "parameters": {"experiment": {"value": "baseline_demo"}}},
              "inputs": pipeline["stages"]["models"]["inputs"]}
    file = tmp_path / "judged.yaml"
    file.write_text(yaml.safe_dump({"name": "judged", "stages": {"judge": judge, "models": models}}))
    args = [str(file), "--sweep-id", "judged", *TINY, f"data.corpus_dir={tiny_corpus}", "trainer.accelerator=cpu"]
    assert sweep(args) == 1
    err = capsys.readouterr().err
    best = outputs / "emotion_classifier_demo" / "judged-judge-0" / "checkpoints" / "best.ckpt"
    assert f"judged-models-0 reads {best}, which run judged-judge-0 of stage judge did not write" in err
    assert not (outputs / "baseline_demo").exists()
