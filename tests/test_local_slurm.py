"""The local single-node Slurm the cluster tests run against: it starts, runs the project's Python, fakes GPUs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from experiments.launch.submit import main as submit

REPO = Path(__file__).resolve().parents[1]


def wait_for(job_id: str, env: dict[str, str], timeout: float = 120) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, env=env).stdout
        state = next((w.split("=", 1)[1] for w in out.split() if w.startswith("JobState=")), "")
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            return state
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} did not finish in {timeout} s\n{slurm_state(env)}")


def slurm_state(env: dict[str, str]) -> str:
    """What a timed-out test needs to say why: the queue, the node's state and reason, the controller's last lines."""
    lines = []
    for command in (["squeue", "-a", "-o", "%i %T %r %M %C"], ["sinfo", "-N", "-o", "%N %T %E %C %m"]):
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        lines.append(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}")
    for name in ("slurmctld.log", "slurmd.log"):
        log = Path(env["SLURM_CONF"]).parent / "log" / name
        if log.is_file():
            lines.append(f"$ tail {log}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
    return "\n".join(lines)


def sbatch(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def submit_baseline(local_slurm: dict[str, str], tiny_corpus: Path, tmp_path: Path,
                    *overrides: str) -> tuple[str, dict[str, str]]:
    """`dtl submit` the baseline on the tiny corpus, outputs under tmp_path; (job id, its environment)."""
    env = dict(local_slurm, DTL_OUTPUT_ROOT=str(tmp_path / "outputs"), DTL_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("WANDB_SERVICE", None)  # each job gets its own W&B service, as on a cluster
    out = subprocess.run([sys.executable, "-m", "experiments.cli", "submit", "experiment=baseline_demo",
                          f"data.corpus_dir={tiny_corpus}", "data.build_demo=false", "data.batch_size=4",
                          "launcher.cpus_per_task=1", "launcher.mem_gb=4", *overrides],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split("submitted job ")[1].split(":")[0], env


def test_a_job_runs_the_project_python(local_slurm, tmp_path):
    log = tmp_path / "job-%j.out"
    job = sbatch(["-o", str(log), "--wrap",
                  f"{sys.executable} -c 'from dtl_foundation.arkit import MOUTH_INDICES; print(len(MOUTH_INDICES))'"],
                 local_slurm)
    assert wait_for(job, local_slurm) == "COMPLETED"
    assert (tmp_path / f"job-{job}.out").read_text().strip() == "27"


def test_fake_gpus_are_allocated_per_task(local_slurm, tmp_path):
    log = tmp_path / "gpu-%j.out"
    job = sbatch(["-o", str(log), "--gres=gpu:2", "--nodes=1", "--ntasks-per-node=2", "--wrap",
                  "srun bash -c 'echo rank=$SLURM_PROCID gpus=$SLURM_JOB_GPUS'"], local_slurm)
    assert wait_for(job, local_slurm) == "COMPLETED"
    lines = sorted((tmp_path / f"gpu-{job}.out").read_text().split())
    assert lines == ["gpus=0,1", "gpus=0,1", "rank=0", "rank=1"]


def test_dry_run_renders_resources_requeue_and_one_task_per_device():
    out = subprocess.run([sys.executable, "-m", "experiments.cli", "submit", "--dry-run", "experiment=emodiff_demo",
                          "launcher.gpus_per_node=4", "launcher.nodes=2", "launcher.account=lab",
                          "launcher.time=2:00:00"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    script = out.stdout
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gres=gpu:4", "#SBATCH --requeue",
                 "#SBATCH --signal=SIGUSR1@90", "#SBATCH --account=lab", "#SBATCH --time=2:00:00"):
        assert line in script
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    assert "experiment=emodiff_demo" in srun and "trainer.devices=4" in srun and "trainer.num_nodes=2" in srun
    assert "run_id=" not in srun  # the job takes slurm-<job id>, stable across requeues


@pytest.mark.parametrize(("exported", "asked", "cpus"), [("1", [], 1), ("3", [], 3), (None, [], 2), ("", [], 2),
                                                     ("1", ["launcher.cpus_per_task=4"], 4)])
def test_a_job_asks_for_the_cpus_its_exported_openmp_threads_use(exported, asked, cpus, monkeypatch, capsys):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if exported is not None:
        monkeypatch.setenv("OMP_NUM_THREADS", exported)
    assert submit(["--dry-run", "experiment=emodiff_demo", *asked]) == 0
    script = capsys.readouterr().out
    assert f"#SBATCH --cpus-per-task={cpus}" in script.splitlines()
    # The job's threads: the exported count (sbatch passes the environment on), else one per allotted CPU.
    assert "export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}" in script


def test_submitted_training_job_completes_with_checkpoint_and_logs(local_slurm, tiny_corpus, tmp_path):
    job, env = submit_baseline(local_slurm, tiny_corpus, tmp_path, "trainer.max_steps=30",
                               "trainer.check_val_every_n_epoch=1",
                               "callbacks.last_checkpoint.every_n_train_steps=10")
    state = wait_for(job, env, timeout=400)
    log = tmp_path / "outputs" / "slurm" / f"baseline_demo-{job}.out"
    assert state == "COMPLETED", log.read_text()[-3000:]
    run_dir = tmp_path / "outputs" / "baseline_demo" / f"slurm-{job}"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert list((run_dir / "csv").glob("attempt_0/metrics.csv"))
    assert list((run_dir / "wandb").glob("offline-run-*"))
    assert "test/mouth_error" in log.read_text()
    assert "SLURM_JOB_ID=" + job in (run_dir / "meta" / "attempt_0" / "env.txt").read_text()


@pytest.mark.slow
def test_sigusr1_requeues_and_resumes_in_the_same_run(local_slurm, tiny_corpus, tmp_path):
    job, env = submit_baseline(local_slurm, tiny_corpus, tmp_path, "trainer.max_steps=300",
                               "trainer.check_val_every_n_epoch=10", "test=false",
                               "callbacks.last_checkpoint.every_n_train_steps=20")
    run_dir = tmp_path / "outputs" / "baseline_demo" / f"slurm-{job}"
    log = tmp_path / "outputs" / "slurm" / f"baseline_demo-{job}.out"
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "last.ckpt").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert (run_dir / "checkpoints" / "last.ckpt").exists(), log.read_text()[-3000:]
    subprocess.run(["scancel", "--signal=USR1", job], check=True, env=env)
    state = wait_for(job, env, timeout=500)
    text = log.read_text()
    assert state == "COMPLETED", text[-3000:]
    info = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, env=env).stdout
    assert "Restarts=1" in info, info
    assert list(run_dir.glob("hpc_ckpt_*.ckpt")), "no requeue checkpoint was saved"
    assert (run_dir / "meta" / "attempt_1").is_dir()
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["global_step"] == 300
    resumed_from = torch.load(sorted(run_dir.glob("hpc_ckpt_*.ckpt"))[0], weights_only=True)["global_step"]
    with open(run_dir / "csv" / "attempt_1" / "metrics.csv") as f:
        steps = [int(row["step"]) for row in csv.DictReader(f)]
    assert 0 < resumed_from < 300 and min(steps) >= resumed_from - 1  # continued, not restarted
    wandb_id = (run_dir / "wandb_id").read_text().strip()
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))  # named by start time: the first attempt first
    assert len(runs) == 2 and all(wandb_id in p.name for p in runs)
    from experiments.compare.run_logs import inspect_wandb_file

    first, second = ({r.get("type") for r in inspect_wandb_file(next(p.glob("run-*.wandb")))} for p in runs)
    # W&B shows the requeue as a preemption, and the first attempt's metrics reached its run file
    assert {"preempting", "history", "exit"} <= first and "preempting" not in second, (first, second)


@pytest.mark.slow
def test_two_task_ddp_job_sees_both_ranks(local_slurm, tiny_corpus, tmp_path):
    job, env = submit_baseline(local_slurm, tiny_corpus, tmp_path, "trainer.max_steps=20",
                               "trainer.check_val_every_n_epoch=1", "launcher.cpu_tasks_per_node=2")
    state = wait_for(job, env, timeout=400)
    text = (tmp_path / "outputs" / "slurm" / f"baseline_demo-{job}.out").read_text()
    assert state == "COMPLETED", text[-3000:]
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in text and "GLOBAL_RANK: 1, MEMBER: 2/2" in text
    run_dir = tmp_path / "outputs" / "baseline_demo" / f"slurm-{job}"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 20


@pytest.fixture(scope="module")
def video_clips(tmp_path_factory) -> Path:
    """A 2-speaker demo corpus with 6 of its clips rendered as talking videos (the others have no video)."""
    from datamodules.demo.build import build_demo_corpus
    from datamodules.demo.videos import render_demo_videos

    root = build_demo_corpus(tmp_path_factory.mktemp("videos") / "corpus", speakers=2, sentences=1, progress=False)
    clips = [f"{speaker}_{emotion}_level_3_001" for speaker in ("M001", "W002")
             for emotion in ("happy", "sad", "angry")]
    assert render_demo_videos(root, clip_ids=clips, progress=False)["rendered"] == len(clips)
    return root


def test_submit_extract_dry_run_renders_one_array_task_per_shard(tmp_path):
    video_clips = tmp_path  # nothing is read at submission but the options
    out = subprocess.run([sys.executable, "-m", "experiments.cli", "submit", "extract", str(video_clips), "--shards",
                          "8", "--parallel", "3", "launcher.cpus_per_task=4", "launcher.time=1:00:00", "--csv",
                          "--dry-run"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    for line in ("#SBATCH --array=0-7%3", "#SBATCH --cpus-per-task=4", "#SBATCH --time=1:00:00", "#SBATCH --requeue",
                 "#SBATCH --signal=SIGUSR1@90", f"#SBATCH --output={video_clips}/extraction/slurm/"):
        assert line in out.stdout, line
    srun = next(line for line in out.stdout.splitlines() if line.startswith("srun "))
    assert srun.endswith(f"data extract {video_clips} --shard array/8 --workers 4 --csv")
    refused = subprocess.run([sys.executable, "-m", "experiments.cli", "submit", "extract", str(video_clips),
                              "--shards", "2", "--backend", "dlib", "--dry-run"],
                             capture_output=True, text=True, cwd=REPO, timeout=120)
    assert refused.returncode == 2 and "invalid choice: 'dlib'" in refused.stderr  # checked before queueing


@pytest.mark.slow
def test_extraction_as_a_job_array_with_a_requeued_task(local_slurm, video_clips, tmp_path):
    """`dtl submit extract --shards 2`: each task extracts its half; task 0, warned by SIGUSR1 after its first clip,
    requeues itself and its second start skips that clip; every clip ends up extracted exactly once."""
    out = tmp_path / "tracks"
    env = dict(local_slurm, DTL_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("WANDB_SERVICE", None)
    submitted = subprocess.run([sys.executable, "-m", "experiments.cli", "submit", "extract", str(video_clips),
                                "--shards", "2", "--out", str(out), "launcher.cpus_per_task=1", "launcher.mem_gb=4"],
                               capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert submitted.returncode == 0, submitted.stderr
    job = submitted.stdout.split("submitted job array ")[1].split(" ")[0]
    records = out / "extraction" / "clips"
    deadline = time.time() + 300
    while time.time() < deadline and not any(p.name.startswith("M001_angry") for p in records.glob("*.json")):
        time.sleep(0.2)  # shard 0 of the clip-id-sorted list: M001_angry, M001_sad, W002_happy
    subprocess.run(["scancel", "--signal=USR1", f"{job}_0"], check=True, env=env)
    states = {task: wait_for(f"{job}_{task}", env, timeout=400) for task in (0, 1)}
    logs = {p.name: p.read_text()[-2000:] for p in (out / "extraction" / "slurm").glob("*.out")}
    assert states == {0: "COMPLETED", 1: "COMPLETED"}, logs
    info = subprocess.run(["scontrol", "show", "job", f"{job}_0"], capture_output=True, text=True, env=env).stdout
    assert "Restarts=1" in info, (info, logs)
    assert "requeued Slurm job" in "".join(logs.values())
    tracks = sorted(p.relative_to(out).as_posix() for p in out.glob("*/arkit/*/level_3/001.npy"))
    assert len(tracks) == 6 and not list(out.rglob(".*.tmp"))
    shard0 = json.loads((out / "extraction" / "summary.shard-0-of-2.json").read_text())
    shard1 = json.loads((out / "extraction" / "summary.shard-1-of-2.json").read_text())
    assert shard0["clips"] == shard1["clips"] == 3 and not shard0["failed"] and not shard1["failed"]
    assert shard0["skipped_done"] >= 1 and shard0["extracted"] + shard0["skipped_done"] == 3  # resumed, not redone
