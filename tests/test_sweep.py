"""`dtl sweep`: W&B sweep files run as `dtl train` runs, here and as one Slurm job array, resumable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from experiments.sweep import command as sweep
from experiments.compare.summary import final_metrics
from experiments.sweep.engine import load_sweep, random_points
from experiments.sweep.store import SweepStore

REPO = Path(__file__).resolve().parents[1]
# Runs of a few seconds on the tiny corpus: the machinery, not learning.
FAST = ["experiment=baseline_demo", "debug=fast", "data.build_demo=false", "trainer.max_steps=2",
        "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "callbacks.blendshape_figure=null",
        "callbacks.progress_bar=null"]
TWO_VARIANTS = {"method": "grid", "metric": {"name": "test/mouth_error", "goal": "minimize"},
                "parameters": {"model": {"parameters": {"net": {"parameters": {"hidden": {"values": [16, 32]}}}}},
                               "seed": {"values": [1]}}}


def write_sweep(path: Path, config: dict | str) -> Path:
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sweep_cache")


@pytest.fixture
def outputs(tmp_path, feature_cache, monkeypatch) -> Path:
    """Runs write under tmp_path/outputs; a WANDB_SERVICE that a child inheriting it would choke on."""
    monkeypatch.setenv("DTL_OUTPUT_ROOT", str(tmp_path / "outputs"))
    monkeypatch.setenv("DTL_CACHE_DIR", str(feature_cache))
    monkeypatch.setenv("WANDB_SERVICE", "inherited-from-the-sweep-process")
    monkeypatch.chdir(REPO)
    return tmp_path / "outputs"


def wandb_run_record(run_dir: Path) -> dict:
    """The run record (group, tags, id) of a run directory's offline W&B run, decoded by wandb-core."""
    [offline] = run_dir.glob("wandb/offline-run-*")
    out = subprocess.run([str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(offline)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return next(json.loads(line)["run"] for line in out.stdout.splitlines() if '"type":"run"' in line)


def check_finished_run(run_dir: Path, sweep_id: str, hidden: int) -> None:
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert "test/mouth_error" in final_metrics(run_dir)
    config = yaml.safe_load((run_dir / "meta" / "attempt_0" / "config.yaml").read_text())
    assert config["model"]["net"]["hidden"] == hidden and config["seed"] == 1
    record = wandb_run_record(run_dir)
    assert record["run_group"] == sweep_id and f"sweep:{sweep_id}" in record["tags"]
    assert record["run_id"] == (run_dir / "wandb_id").read_text().strip()


@pytest.mark.slow
def test_grid_trains_here_and_the_same_command_resumes(outputs, tiny_corpus, tmp_path, capsys):
    file = write_sweep(tmp_path / "two.yaml", TWO_VARIANTS)
    args = [str(file), *FAST, f"data.corpus_dir={tiny_corpus}", "trainer.accelerator=cpu"]
    assert sweep.main([*args, "--max-runs", "1"]) == 0, capsys.readouterr()
    [sweep_dir] = (outputs / "sweeps").iterdir()
    sweep_id = sweep_dir.name
    assert sweep_id.startswith("two-")  # the file's name and a hash: the same command names the same sweep
    store = SweepStore(sweep_dir)
    runs = store.runs()
    assert [r.run_id for r in runs] == [f"{sweep_id}-0", f"{sweep_id}-1"]
    assert [r.params for r in runs] == [{"model.net.hidden": 16, "seed": 1}, {"model.net.hidden": 32, "seed": 1}]
    assert [store.state(r.run_id)["state"] for r in runs] == ["done", "pending"]

    assert sweep.main(args) == 0
    out = capsys.readouterr().out
    assert f"1 of 2 runs already done: skipping {sweep_id}-0" in out
    assert [store.state(r.run_id)["state"] for r in runs] == ["done", "done"]
    for run, hidden in zip(runs, (16, 32)):
        run_dir = outputs / "baseline_demo" / run.run_id
        assert Path(run.run_dir) == run_dir
        check_finished_run(run_dir, sweep_id, hidden)
        assert store.state(run.run_id)["metric"]["test/mouth_error"] == final_metrics(run_dir)["test/mouth_error"]

    assert sweep.main(args) == 0  # everything done: nothing trains again
    assert "2 of 2 runs already done" in capsys.readouterr().out
    assert not list(outputs.glob("baseline_demo/*/meta/attempt_1"))
    assert yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["parameters"] == {
        "model.net.hidden": {"values": [16, 32]}, "seed": {"values": [1]}}


def slurm_task_state(task: str, env: dict[str, str]) -> str:
    out = subprocess.run(["scontrol", "show", "job", task], capture_output=True, text=True, env=env).stdout
    return next((w.split("=", 1)[1] for w in out.split() if w.startswith("JobState=")), "")


@pytest.mark.slow
def test_grid_as_one_slurm_job_array(outputs, tiny_corpus, tmp_path, local_slurm, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_CONF", local_slurm["SLURM_CONF"])
    file = write_sweep(tmp_path / "two.yaml", TWO_VARIANTS)
    args = [str(file), "--slurm", "--sweep-id", "arr", *FAST, f"data.corpus_dir={tiny_corpus}",
            "launcher.cpus_per_task=1", "launcher.mem_gb=4"]
    assert sweep.main(args) == 0, capsys.readouterr()
    store = SweepStore(outputs / "sweeps" / "arr")
    [submission] = json.loads((store.slurm_dir / "submissions.json").read_text())
    script = Path(submission["script"]).read_text()
    for line in ("#SBATCH --array=0-1", "#SBATCH --requeue", "#SBATCH --signal=SIGUSR1@90",
                 f"#SBATCH --output={store.slurm_dir}/%x-%A_%a.out"):
        assert line in script
    assert f"experiments.sweep.task array-task {store.root}" in script

    job, deadline = submission["job"], time.time() + 400
    tasks = [f"{job}_0", f"{job}_1"]
    while time.time() < deadline and not all(
            slurm_task_state(t, local_slurm) in ("COMPLETED", "FAILED", "CANCELLED") for t in tasks):
        time.sleep(1)
    logs = {t: (store.slurm_dir / f"arr-{t}.out").read_text()[-3000:] for t in tasks}
    assert [slurm_task_state(t, local_slurm) for t in tasks] == ["COMPLETED", "COMPLETED"], logs
    for run, hidden in zip(store.runs(), (16, 32)):
        state = store.state(run.run_id)
        assert state["state"] == "done" and state["slurm_job"] == f"{job}_{run.index}"
        check_finished_run(outputs / "baseline_demo" / run.run_id, "arr", hidden)

    capsys.readouterr()
    assert sweep.main(args) == 0  # the same command: every run done, nothing submitted
    assert "nothing to submit" in capsys.readouterr().out
    assert len(json.loads((store.slurm_dir / "submissions.json").read_text())) == 1


RANDOM = {"method": "random", "metric": {"name": "val/mouth_error", "goal": "minimize"},
          "parameters": {"model.optimizer.lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
                         "model.net.hidden": {"values": [16, 32, 64]}}}


def test_random_gives_max_runs_distinct_points_and_extends(outputs, tmp_path):
    spec = load_sweep(write_sweep(tmp_path / "rand.yaml", RANDOM))
    first = sweep.Sweep(spec, ["experiment=baseline_demo"], None, max_runs=3)
    planned = first.plan_upfront()
    assert len({json.dumps(r.params, sort_keys=True) for r in planned}) == 3
    assert [r.run_id for r in planned] == [f"{first.sweep_id}-{k}" for k in range(3)]
    for run in planned:
        assert 1e-4 <= run.params["model.optimizer.lr"] <= 1e-2 and run.params["model.net.hidden"] in (16, 32, 64)
        assert f"model.optimizer.lr={run.params['model.optimizer.lr']!r}" in run.overrides
    again = random_points(spec, 3, [], seed=f"{first.sweep_id}:0")
    assert again == [r.params for r in planned]  # drawn from the sweep id: a dry run shows what will run
    first.open()
    first.add(planned)
    more = sweep.Sweep(spec, ["experiment=baseline_demo"], None, max_runs=5)
    extra = more.plan_upfront()
    assert [r.index for r in extra] == [3, 4]
    assert len({json.dumps(r.params, sort_keys=True) for r in planned + extra}) == 5


def test_random_over_a_small_discrete_space(outputs, tmp_path, capsys):
    file = write_sweep(tmp_path / "small.yaml", {"method": "random", "parameters": {
        "model.net.hidden": {"values": [16, 32]}, "seed": {"values": [1, 2]}}})
    assert sweep.main([str(file), "experiment=baseline_demo", "--max-runs", "4", "--dry-run"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[new] dtl train")]
    points = {tuple(w for w in line.split() if w.startswith(("model.net.hidden=", "seed="))) for line in lines}
    assert len(lines) == 4 and len(points) == 4
    assert sweep.main([str(file), "experiment=baseline_demo", "--max-runs", "5", "--dry-run"]) == 1
    assert "allow only 4 distinct points" in capsys.readouterr().err
    assert not (outputs / "sweeps").exists()  # dry runs write nothing


def write_csv_log(run_dir: Path, metric: str, value: float) -> None:
    path = run_dir / "csv" / "attempt_0" / "metrics.csv"
    path.parent.mkdir(parents=True)
    path.write_text(f"epoch,step,{metric},train/loss\n0,9,,0.5\n0,10,{value},\n")


@pytest.mark.parametrize("goal", ["minimize", "maximize"])
def test_bayes_learns_from_the_metric_in_the_runs_csv_logs(outputs, tmp_path, goal):
    """Finished runs logged val/mouth_error = (dropout - 0.7)^2: bayes should look near 0.7, or at an edge."""
    spec = load_sweep(write_sweep(tmp_path / "bayes.yaml", {
        "method": "bayes", "metric": {"name": "val/mouth_error", "goal": goal},
        "parameters": {"model.net.dropout": {"min": 0.0, "max": 1.0}}}))
    search = sweep.Sweep(spec, ["experiment=baseline_demo"], "bayes", max_runs=8)
    search.open()
    runs = [search.plan(k, {"model.net.dropout": x}) for k, x in enumerate((0.05, 0.25, 0.45, 0.65, 0.9))]
    search.add(runs)
    for run in runs:
        write_csv_log(Path(run.run_dir), "val/mouth_error", (run.params["model.net.dropout"] - 0.7) ** 2)
        search.store.set_state(run.run_id, "done")
    history = search.history()
    assert [h.state for h in history] == ["finished"] * 5
    assert history[1].summary_metrics["val/mouth_error"] == pytest.approx(0.45 ** 2)
    [suggested] = search.suggest_bayes(1)
    x = suggested.params["model.net.dropout"]
    assert suggested.index == 5 and suggested.run_id == "bayes-5"
    assert (0.55 < x < 0.9) if goal == "minimize" else (x < 0.2), x

    search.add([suggested])  # a failed run counts as failed (the engine imputes the worst metric), not finished
    search.store.set_state(suggested.run_id, "failed")
    assert [h.state for h in search.history()] == ["finished"] * 5 + ["failed"]


BAD_FILES = {
    "bad_yaml.yaml": ("method: grid\nparameters: [a\n", "not valid YAML"),
    "a_list.yaml": ("- method: grid\n", "a sweep file is a mapping"),
    "no_params.yaml": ({"method": "grid"}, "parameters: missing"),
    "bad_method.yaml": ({"method": "hyperband", "parameters": {"seed": {"values": [1]}}}, "method: 'hyperband'"),
    "typo_key.yaml": ({"method": "grid", "paramters": {}, "parameters": {"seed": {"values": [1]}}},
                      "'paramters' was unexpected"),
    "min_max.yaml": ({"method": "random", "parameters": {"model.optimizer.lr": {"min": 0.1, "max": 0.01}}},
                     "parameters.model.optimizer.lr"),
    "grid_continuous.yaml": ({"method": "grid", "parameters": {"model.optimizer.lr": {"min": 0.0, "max": 0.1}}},
                             "parameters.model.optimizer.lr: grid search needs discrete parameters"),
    "bayes_no_metric.yaml": ({"method": "bayes", "parameters": {"model.optimizer.lr": {"min": 0.0, "max": 0.1}}},
                             "metric: bayes needs"),
    "not_a_spec.yaml": ({"method": "grid", "parameters": {"seed": [1, 2]}}, "parameters.seed: expected a mapping"),
    "run_id.yaml": ({"method": "grid", "parameters": {"run_id": {"values": ["a"]}}}, "parameters.run_id"),
    "unknown_key.yaml": ({"method": "grid", "parameters": {"model.no_such_key": {"values": [1]}}},
                         "model.no_such_key"),
    "unknown_experiment.yaml": ({"method": "grid", "parameters": {"experiment": {"values": ["no_such_exp"]}}},
                                "no_such_exp"),
    "random_no_count.yaml": ({"method": "random", "parameters": {"model.optimizer.lr": {"min": 0.0, "max": 0.1}}},
                             "needs --max-runs"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_sweep_files_name_the_file_and_the_key(name, outputs, tmp_path, capsys):
    content, message = BAD_FILES[name]
    file = write_sweep(tmp_path / name, content)
    assert sweep.main([str(file)]) == 2
    err = capsys.readouterr().err
    assert str(file) in err and message in err, err
    assert not (outputs / "sweeps").exists()


def test_missing_file_and_override_clashing_with_a_swept_key(outputs, tmp_path, capsys):
    assert sweep.main([str(tmp_path / "nope.yaml")]) == 2
    assert f"{tmp_path / 'nope.yaml'}: no such sweep file" in capsys.readouterr().err
    file = write_sweep(tmp_path / "two.yaml", TWO_VARIANTS)
    assert sweep.main([str(file), "seed=3"]) == 2
    assert "sets seed, which" in capsys.readouterr().err


def test_a_second_dtl_sweep_on_the_same_sweep_stops(outputs, tmp_path, capsys):
    file = write_sweep(tmp_path / "two.yaml", TWO_VARIANTS)
    args = [str(file), "--sweep-id", "busy", "experiment=baseline_demo"]
    with SweepStore(outputs / "sweeps" / "busy").lock():
        assert sweep.main(args) == 2
    assert "another dtl sweep is running this sweep" in capsys.readouterr().err
    assert not (outputs / "sweeps" / "busy" / "runs").exists()


def test_wandb_backend_dry_run_prints_the_sweep_config_and_the_agent_array(outputs, capsys):
    ablation = REPO / "configs" / "sweep" / "ablation.yaml"
    assert sweep.main([str(ablation), "--backend", "wandb", "--project", "proj", "--entity", "team",
                       "--count-per-task", "3", "--dry-run", "launcher.partition=gpu"]) == 0
    out = capsys.readouterr().out
    config_text, script = out.split("# sbatch script")
    config = yaml.safe_load(config_text)
    assert config["method"] == "grid" and config["metric"] == {"name": "test/mouth_error", "goal": "minimize"}
    assert config["parameters"] == load_sweep(ablation).parameters
    assert config["command"][:5] == ["${env}", "${interpreter}", "-m", "experiments.sweep.task", "agent-run"]
    assert "launcher.partition=gpu" in config["command"] and "trainer.accelerator=cpu" in config["command"]
    import sweeps

    sweeps.SweepConfig(config)  # W&B's own schema accepts it
    for line in ("#SBATCH --array=0-3", "#SBATCH --requeue", "#SBATCH --signal=SIGUSR1@90",
                 "#SBATCH --partition=gpu", "#SBATCH --job-name=ablation"):
        assert line in script  # 12 grid points / 3 runs per agent = 4 array tasks
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    assert srun == f"srun {Path(sys.executable).parent / 'wandb'} agent --count 3 'team/proj/<SWEEP_ID>'"
    assert f'export PATH={Path(sys.executable).parent}:"$PATH"' in script


def test_wandb_backend_refuses_multi_task_agents(outputs, capsys):
    ablation = REPO / "configs" / "sweep" / "ablation.yaml"
    assert sweep.main([str(ablation), "--backend", "wandb", "--dry-run", "launcher.gpus_per_node=4"]) == 2
    assert "one agent" in capsys.readouterr().err


@pytest.mark.slow
def test_agent_run_trains_the_point_wandb_hands_out(outputs, tiny_corpus, tmp_path):
    """What `wandb agent` starts for a run, with the agent's environment made here (the server part is not)."""
    from wandb.sdk.lib.config_util import save_config_file_from_dict

    params = tmp_path / "wandb" / "sweep-swp1" / "config-r4nd0m.yaml"
    save_config_file_from_dict(str(params), {"model.net.hidden": {"value": 16}, "seed": {"value": 1}})
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(WANDB_SWEEP_ID="swp1", WANDB_RUN_ID="r4nd0m", WANDB_SWEEP_PARAM_PATH=str(params))
    out = subprocess.run([sys.executable, "-m", "experiments.sweep.task", "agent-run", *FAST,
                          f"data.corpus_dir={tiny_corpus}", "trainer.accelerator=cpu",
                          "logger.wandb.offline=true"],  # the agent's runs log online; no server here
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    run_dir = outputs / "baseline_demo" / "swp1-r4nd0m"
    assert (run_dir / "wandb_id").read_text().strip() == "r4nd0m"
    check_finished_run(run_dir, "swp1", 16)


@pytest.mark.slow
def test_agent_run_under_ddp_brings_lightnings_second_rank_back_to_training(outputs, tiny_corpus, tmp_path):
    """Lightning starts rank 1 as `python -m experiments.sweep.task <the training's overrides>` with LOCAL_RANK set;
    it must train the same run (rank 0's run id and attempt), not stop at the task's usage."""
    params = tmp_path / "wandb" / "sweep-swp2" / "config-r4nk.yaml"
    params.parent.mkdir(parents=True)
    params.write_text(yaml.safe_dump({"model.net.hidden": {"value": 16}, "seed": {"value": 1}}))
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(WANDB_SWEEP_ID="swp2", WANDB_RUN_ID="r4nk", WANDB_SWEEP_PARAM_PATH=str(params))
    out = subprocess.run([sys.executable, "-m", "experiments.sweep.task", "agent-run", *FAST,
                          f"data.corpus_dir={tiny_corpus}", "trainer=ddp", "trainer.devices=2",
                          "trainer.accelerator=cpu", "logger.wandb.offline=true"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in text and "GLOBAL_RANK: 1, MEMBER: 2/2" in text
    run_dir = outputs / "baseline_demo" / "swp2-r4nk"
    assert [p.name for p in (run_dir / "meta").iterdir()] == ["attempt_0"]  # rank 1 joined rank 0's attempt
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and "test/mouth_error" in final_metrics(run_dir)
