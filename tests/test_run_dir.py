"""Run directory decisions: run id sources, newest complete checkpoint, persisted W&B id, per-attempt metadata."""

import torch
from omegaconf import OmegaConf

from experiments import run_dir as rd


def test_run_id_sources(monkeypatch):
    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(var, raising=False)
    assert rd.resolve_run_id("mine") == "mine"
    generated = rd.resolve_run_id()
    assert generated != rd.resolve_run_id()
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert rd.resolve_run_id() == "slurm-4242"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert rd.resolve_run_id() == "slurm-77_3"
    assert rd.resolve_run_id("cli-wins") == "cli-wins"


def test_newest_complete_checkpoint_wins_and_truncated_is_ignored(tmp_path):
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    import os
    import time

    torch.save({"global_step": 10}, ckpts / "last.ckpt")
    torch.save({"global_step": 5}, ckpts / "best.ckpt")
    os.utime(ckpts / "best.ckpt", ns=(time.time_ns() - 10**10,) * 2)
    assert rd.find_resume_checkpoint(tmp_path) == ckpts / "last.ckpt"

    torch.save({"global_step": 20}, tmp_path / "hpc_ckpt_1.ckpt")
    os.utime(tmp_path / "hpc_ckpt_1.ckpt", ns=(time.time_ns() + 10**9,) * 2)  # newer even on a coarse-mtime filesystem
    assert rd.find_resume_checkpoint(tmp_path) == tmp_path / "hpc_ckpt_1.ckpt"

    data = (tmp_path / "hpc_ckpt_1.ckpt").read_bytes()
    (tmp_path / "hpc_ckpt_2.ckpt").write_bytes(data[: len(data) // 2])  # a save killed half-way
    assert not rd.is_complete_checkpoint(tmp_path / "hpc_ckpt_2.ckpt")
    assert rd.find_resume_checkpoint(tmp_path) == tmp_path / "hpc_ckpt_1.ckpt"


def test_prepare_run_keeps_wandb_id_and_numbers_attempts(tmp_path):
    cfg = OmegaConf.create({"paths": {"run_dir": str(tmp_path / "run")}, "resume": True, "ckpt_path": None,
                            "seed": 1})
    first = rd.prepare_run(cfg)
    second = rd.prepare_run(cfg)
    assert first.wandb_id == second.wandb_id
    assert (first.attempt, second.attempt) == (0, 1)
    assert first.resume_checkpoint is None
    meta = tmp_path / "run" / "meta"
    for attempt in ("attempt_0", "attempt_1"):
        files = {p.name for p in (meta / attempt).iterdir()}
        assert {"config.yaml", "command.txt", "git.txt", "git.diff", "env.txt"} <= files
    assert "seed: 1" in (meta / "attempt_0" / "config.yaml").read_text()


def run_cfg(tmp_path, **keys):
    return OmegaConf.create({"paths": {"run_dir": str(tmp_path / "run")}, "resume": True, "ckpt_path": None,
                             "seed": 1, **keys})


def test_resume_false_starts_fresh_beside_a_complete_checkpoint(tmp_path):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    torch.save({"global_step": 10}, tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert rd.prepare_run(run_cfg(tmp_path)).resume_checkpoint == tmp_path / "run" / "checkpoints" / "last.ckpt"
    fresh = rd.prepare_run(run_cfg(tmp_path, resume=False))
    assert fresh.resume_checkpoint is None and fresh.attempt == 1


def test_ckpt_path_names_the_file_to_resume_and_a_bad_one_is_refused(tmp_path):
    import pytest

    other = tmp_path / "elsewhere.ckpt"
    torch.save({"global_step": 3}, other)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    torch.save({"global_step": 10}, tmp_path / "run" / "checkpoints" / "last.ckpt")  # newer, but not asked for
    assert rd.prepare_run(run_cfg(tmp_path, ckpt_path=str(other))).resume_checkpoint == other
    with pytest.raises(FileNotFoundError, match=r"ckpt_path=.*missing.ckpt: no such checkpoint"):
        rd.prepare_run(run_cfg(tmp_path, ckpt_path=str(tmp_path / "missing.ckpt")))
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(other.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"ckpt_path=.*cut.ckpt: not a complete checkpoint"):
        rd.prepare_run(run_cfg(tmp_path, ckpt_path=str(cut)))
    (tmp_path / "zero.ckpt").mkdir()  # a DeepSpeed directory without `latest`
    with pytest.raises(ValueError, match=r"zero.ckpt: not a complete checkpoint"):
        rd.prepare_run(run_cfg(tmp_path, ckpt_path=str(tmp_path / "zero.ckpt")))


def test_of_two_zero_directories_the_one_saved_last_resumes(tmp_path):
    """A DeepSpeed directory's save time is its `latest` file's (rewritten at the end of every save)."""
    import os
    import time

    from test_run_layout import zero_checkpoint

    ckpts = tmp_path / "checkpoints"
    older, newer = zero_checkpoint(ckpts / "best.ckpt"), zero_checkpoint(ckpts / "last.ckpt")
    now = time.time_ns()
    os.utime(older / "latest", ns=(now - 10**10,) * 2)
    os.utime(newer / "latest", ns=(now,) * 2)
    os.utime(newer, ns=(now - 2 * 10**10,) * 2)  # the directory's own time says nothing
    assert rd.saved_at(newer) == now
    assert rd.find_resume_checkpoint(tmp_path) == newer


def test_an_empty_archive_is_no_checkpoint_and_one_member_is(tmp_path):
    import zipfile

    with zipfile.ZipFile(tmp_path / "empty.ckpt", "w"):
        pass
    with zipfile.ZipFile(tmp_path / "one.ckpt", "w") as archive:
        archive.writestr("data.pkl", b"x")
    assert not rd.is_complete_checkpoint(tmp_path / "empty.ckpt")
    assert rd.is_complete_checkpoint(tmp_path / "one.ckpt")


def test_holding_run_holds_on_rank_zero_only_and_clears_killed_writes(tmp_path, monkeypatch):
    import pytest

    from dtl_foundation.directory_lock import DirectoryHeld, hold_directory

    for var in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK", rd.ATTEMPT_ENV):
        monkeypatch.delenv(var, raising=False)
    leftover = tmp_path / "run" / "checkpoints" / ".last.ckpt.ab12cd.tmp"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half")
    with rd.holding_run(run_cfg(tmp_path)) as state:
        assert state.attempt == 0 and not leftover.exists()
        assert rd.os.environ[rd.ATTEMPT_ENV] == "0"  # for the ranks Lightning starts from this process
        with pytest.raises(DirectoryHeld):
            with hold_directory(tmp_path / "run"):
                pass
    with hold_directory(tmp_path / "run"):  # released
        pass
    monkeypatch.setenv("RANK", "1")  # a rank of rank 0's run: no lock of its own, rank 0 holds the run
    with hold_directory(tmp_path / "run"):
        with rd.holding_run(run_cfg(tmp_path)) as state:
            assert state.run_dir == tmp_path / "run" and state.attempt == 0  # rank 0's attempt, not a new one


def test_the_saved_config_is_resolved_and_resume_is_the_default(tmp_path, monkeypatch, caplog):
    import logging
    import re

    caplog.set_level(logging.INFO, logger="experiments.run_dir")
    assert rd.prepare_run(run_cfg(tmp_path / "new" / "nested")).resume_checkpoint is None  # created, parents too
    assert "starting fresh" in caplog.text and "resuming from" not in caplog.text

    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(var, raising=False)

    cfg = OmegaConf.create({"paths": {"run_dir": str(tmp_path / "run")}, "seed": 1, "where": "${paths.run_dir}/x"})
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    torch.save({"global_step": 1}, tmp_path / "run" / "checkpoints" / "last.ckpt")
    state = rd.prepare_run(cfg)  # no `resume` key: resume
    assert state.resume_checkpoint == tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert f"resuming from {state.resume_checkpoint}" in caplog.text
    assert f"where: {tmp_path}/run/x" in (tmp_path / "run" / "meta" / "attempt_0" / "config.yaml").read_text()
    assert re.fullmatch(r"[0-9a-f]{8}", state.wandb_id)
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", rd.resolve_run_id())


def test_git_missing_is_noted_not_fatal(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on it
    assert rd._git("rev-parse", "HEAD").startswith("git unavailable:")


def test_git_records_this_repository():
    from pathlib import Path

    import pytest

    if not (Path(rd.__file__).resolve().parents[1] / ".git").exists():
        pytest.skip("not a git checkout: nothing for git to record")
    assert Path(rd._git("rev-parse", "--show-toplevel").strip()) == Path(rd.__file__).resolve().parents[1]
