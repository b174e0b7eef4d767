"""The run layout every reader of run directories uses, and checkpoint resolution for loading trained runs."""

from pathlib import Path

import pytest
import torch

from dtl_foundation.run_layout import RunLayout, attempt_number, is_zero_checkpoint
from lightning_modules.trained_model import resolve_checkpoint


def zero_checkpoint(path):
    """A DeepSpeed ZeRO checkpoint directory as Lightning saves it: `latest` names a tag folder of states."""
    (path / "global_step4").mkdir(parents=True)
    (path / "latest").write_text("global_step4\n")
    for name in ("mp_rank_00_model_states.pt", "zero_pp_rank_0_mp_rank_00_optim_states.pt"):
        (path / "global_step4" / name).write_bytes(b"states")
    return path


def run_with_config(root, attempts=(0,)):
    for k in attempts:
        (root / "meta" / f"attempt_{k}").mkdir(parents=True)
        (root / "meta" / f"attempt_{k}" / "config.yaml").write_text(f"attempt: {k}\n")
    return root


def test_a_zero_checkpoint_directory_is_named_as_one_not_read_as_a_run_directory(tmp_path):
    """The ZeRO directory case is checked before the run-directory case (a ZeRO checkpoint is a directory too)."""
    zero = zero_checkpoint(run_with_config(tmp_path / "run") / "checkpoints" / "last.ckpt")
    with pytest.raises(FileNotFoundError, match=r"last\.ckpt: a DeepSpeed ZeRO checkpoint directory; convert it "
                                                r"first: dtl export"):
        resolve_checkpoint(zero)


def test_a_run_whose_checkpoints_are_zero_directories_asks_for_an_export(tmp_path):
    run = run_with_config(tmp_path / "run")
    zero_checkpoint(run / "checkpoints" / "best.ckpt")
    with pytest.raises(FileNotFoundError, match="its checkpoints are DeepSpeed ZeRO directories"):
        resolve_checkpoint(run)
    torch.save({}, run / "checkpoints" / "best.fp32.ckpt")  # what `dtl export` writes
    assert resolve_checkpoint(run) == (run / "checkpoints" / "best.fp32.ckpt", run / "meta/attempt_0/config.yaml")


def test_the_latest_attempt_config_and_csv_come_last_in_numeric_order(tmp_path):
    run = RunLayout(run_with_config(tmp_path / "run", attempts=(0, 2, 10)))
    (run.root / "meta" / "attempt_old").mkdir()  # a user's copy, not an attempt
    assert run.attempts() == [0, 2, 10]
    assert run.next_attempt() == 11
    assert [p.parent.name for p in run.configs()] == ["attempt_0", "attempt_2", "attempt_10"]
    for k in (10, 9):
        (run.root / "csv" / f"attempt_{k}").mkdir(parents=True)
        (run.root / "csv" / f"attempt_{k}" / "metrics.csv").write_text("step\n")
    assert [p.parent.name for p in run.csv_logs()] == ["attempt_9", "attempt_10"]
    assert RunLayout.of_attempt_file(run.configs()[-1]) == run
    run.checkpoints.mkdir()
    torch.save({}, run.checkpoints / "last.ckpt")
    assert resolve_checkpoint(run.root) == (run.checkpoints / "last.ckpt", run.root / "meta/attempt_10/config.yaml")
    assert RunLayout.of_checkpoint(run.checkpoints / "last.ckpt") == run


def test_resume_candidates_and_zero_detection(tmp_path):
    run = RunLayout(tmp_path / "run")
    zero = zero_checkpoint(run.checkpoints / "last.ckpt")
    (run.root / "hpc_ckpt_1.ckpt").write_bytes(b"x")
    (run.checkpoints / "empty.ckpt").mkdir()  # neither a file nor a DeepSpeed directory
    assert sorted(p.name for p in run.resume_candidates()) == ["hpc_ckpt_1.ckpt", "last.ckpt"]
    assert is_zero_checkpoint(zero) and run.zero_checkpoint() == zero
    (zero / "global_step4" / "mp_rank_00_model_states.pt").unlink()
    assert not is_zero_checkpoint(zero) and run.zero_checkpoint() is None


def test_attempt_number_reads_the_attempt_folder_or_says_minus_one():
    assert attempt_number(Path("run/meta/attempt_3/config.yaml")) == 3
    assert attempt_number(Path("run/csv/attempt_12/metrics.csv")) == 12
    assert attempt_number(Path("run/meta/attempt_old/config.yaml")) == -1
    assert attempt_number(Path("run/checkpoints/last.ckpt")) == -1
