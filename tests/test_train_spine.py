"""The training spine end to end: config composition, a learning baseline, kill -9 and resume."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from experiments.train import CONFIG_DIR, train
from training_helpers import compose_train, mean_pose_mouth_error

REPO = Path(__file__).resolve().parents[1]


def test_every_experiment_and_group_composes(tmp_path):
    for experiment in sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml")):
        cfg = compose_train([f"experiment={experiment}", "run_id=x", f"paths.output_root={tmp_path}"])
        assert cfg.experiment_name == experiment
        assert cfg.paths.run_dir == f"{tmp_path}/{experiment}/x"
        for network in ("net", "denoiser"):
            if network in cfg.model and "audio_dim" in cfg.model[network]:
                assert cfg.model[network].audio_dim == 320  # 80 mels x 4 sub-frames, from the data config
    import yaml

    for sweep in (Path(CONFIG_DIR) / "sweep").glob("*.yaml"):
        spec = yaml.safe_load(sweep.read_text())
        # a pipeline's stages are sweeps, inline or a file of this folder (checked as itself)
        sweeps = [stage["sweep"] for stage in spec["stages"].values()] if "stages" in spec else [spec]
        experiments = [value for sweep_spec in sweeps if isinstance(sweep_spec, dict)
                       for value in (lambda p: p.get("values") or [p["value"]])(sweep_spec["parameters"]["experiment"])]
        assert experiments, sweep
        for experiment in experiments:
            assert compose_train([f"experiment={experiment}", "run_id=x"]).experiment_name == experiment, sweep
    for trainer in ("cpu", "gpu", "ddp"):
        assert compose_train([f"trainer={trainer}", "run_id=x"]).trainer._target_ == "lightning.pytorch.Trainer"


def test_a_failed_run_closes_its_wandb_run_and_the_next_run_logs_to_its_own(tmp_path):
    import wandb

    from datamodules.tracks import CorpusError

    base = ["experiment=baseline_demo", f"paths.output_root={tmp_path}", "data.build_demo=false",
            f"data.corpus_dir={tmp_path}/no_corpus", "trainer.accelerator=cpu"]
    for run_id in ("first", "second"):
        with pytest.raises(CorpusError, match="does not exist"):  # the datamodule fails inside fit, after W&B started
            train(compose_train([*base, f"run_id={run_id}"]))
        assert wandb.run is None
        runs = list((tmp_path / "baseline_demo" / run_id / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(runs) == 1, f"run {run_id}: {runs}"


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    rows = []
    for path in sorted((run_dir / "csv").glob("attempt_*/metrics.csv")):
        with open(path) as f:
            rows += [dict(r, attempt=path.parent.name) for r in csv.DictReader(f)]
    return rows


@pytest.mark.slow
def test_baseline_beats_mean_pose_on_held_out_speakers(demo_corpus, tmp_path):
    cfg = compose_train(["experiment=baseline_demo", "run_id=learn", f"paths.output_root={tmp_path}",
                         f"data.corpus_dir={demo_corpus}", f"paths.cache_dir={tmp_path}/cache",
                         "trainer.max_steps=300", "trainer.accelerator=cpu"])
    metrics = train(cfg)
    run_dir = tmp_path / "baseline_demo" / "learn"
    assert (run_dir / "checkpoints" / "best.ckpt").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))

    from datamodules.blendshape_datamodule import BlendshapeDataModule
    import hydra

    datamodule: BlendshapeDataModule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("test")
    baseline = mean_pose_mouth_error(datamodule)
    test_error = metrics["test/mouth_error"]
    print(f"test mouth error: baseline regressor {test_error:.4f}, mean pose {baseline:.4f}")
    assert test_error < 0.8 * baseline

    from experiments.compare.summary import final_metrics

    assert final_metrics(run_dir)["test/mouth_error"] == pytest.approx(test_error, rel=1e-6)
    val = [(int(r["step"]), float(r["val/mouth_error"])) for r in read_metrics(run_dir) if r.get("val/mouth_error")]
    assert len(val) >= 2 and val[-1][1] < val[0][1]  # validation improves over training


def dtl_train(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "experiments.cli", "train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_sigkill_after_first_checkpoint_then_same_command_resumes(tiny_corpus, tmp_path):
    env = dict(os.environ, DTL_OUTPUT_ROOT=str(tmp_path / "outputs"), DTL_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("WANDB_SERVICE", None)  # each launch gets its own W&B service, as separate jobs do
    args = ["experiment=baseline_demo", "run_id=preempted", f"data.corpus_dir={tiny_corpus}", "data.build_demo=false",
            "data.batch_size=4", "trainer.max_steps=200", "trainer.check_val_every_n_epoch=10",
            "callbacks.last_checkpoint.every_n_train_steps=20", "trainer.accelerator=cpu", "test=false"]
    run_dir = tmp_path / "outputs" / "baseline_demo" / "preempted"
    last = run_dir / "checkpoints" / "last.ckpt"

    first = dtl_train(args, env)
    deadline = time.time() + 240
    while not last.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert first.poll() is None, f"run ended before it could be killed:\n{first.stdout.read()}"
    first.send_signal(signal.SIGKILL)
    first.wait()
    step_at_kill = torch.load(last, weights_only=False)["global_step"]
    assert 0 < step_at_kill < 200
    wandb_id = (run_dir / "wandb_id").read_text().strip()

    second = dtl_train(args, env)
    out, _ = second.communicate(timeout=400)
    assert second.returncode == 0, out
    assert "resuming from" in out and str(last) in out

    final = torch.load(last, weights_only=False)
    assert final["global_step"] == 200
    rows = read_metrics(run_dir)
    first_steps = [int(r["step"]) for r in rows if r["attempt"] == "attempt_1"]
    assert min(first_steps) >= step_at_kill - 1  # the second attempt continued, it did not start over
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and all(p.name.endswith(wandb_id) or f"-{wandb_id}-" in p.name for p in runs), runs
    assert (run_dir / "meta" / "attempt_0" / "config.yaml").is_file()
    assert (run_dir / "meta" / "attempt_1" / "command.txt").read_text().count("run_id=preempted") == 1
