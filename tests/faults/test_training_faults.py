"""Training runs under faults: a kill inside the W&B id and metadata writes, a truncated last.ckpt, a NaN loss."""

from __future__ import annotations

import math

import pytest
import torch

from fault_helpers import dtl, finish, run_env, tiny_run_args

pytestmark = pytest.mark.slow  # real `dtl` launches, ~20-60 s each


def load(path):
    return torch.load(path, weights_only=False)


@pytest.mark.parametrize("fault", ["mid_write:kill:wandb_id"])
def test_a_kill_inside_a_run_record_write_then_the_same_command_completes(tiny_corpus, tmp_path, fault):
    args = tiny_run_args(tiny_corpus, "rec", steps=20)
    run_dir = tmp_path / "outputs" / "baseline_demo" / "rec"
    code, out = finish(dtl("train", args, run_env(tmp_path, fault)))
    assert code == -9, out
    assert not (run_dir / "checkpoints").exists()
    if "wandb_id" in fault:
        assert not (run_dir / "wandb_id").exists()  # not a half id that the next launch would adopt
    else:
        assert not (run_dir / "meta" / "attempt_0" / "config.yaml").exists()
        killed_id = (run_dir / "wandb_id").read_text().strip()

    code, out = finish(dtl("train", args, run_env(tmp_path)))
    assert code == 0, out
    assert load(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 20
    wandb_id = (run_dir / "wandb_id").read_text().strip()
    assert len(wandb_id) == 8 and int(wandb_id, 16) >= 0
    if "wandb_id" not in fault:
        assert wandb_id == killed_id  # the id written before the kill is kept
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and runs[0].name.endswith(wandb_id)


@pytest.mark.parametrize("fault", ["mid_write:kill:last.ckpt#2", "before_rename:enospc:last.ckpt#2"])
def test_a_kill_or_a_full_disk_inside_a_checkpoint_write_keeps_the_previous_one(tiny_corpus, tmp_path, fault):
    """last.ckpt is saved at steps 10, 20, 30: the second save dies; the step-10 file stays whole and the same
    command resumes from it."""
    args = tiny_run_args(tiny_corpus, "ckpt", steps=30)
    last = tmp_path / "outputs" / "baseline_demo" / "ckpt" / "checkpoints" / "last.ckpt"
    code, out = finish(dtl("train", args, run_env(tmp_path, fault)))
    if "enospc" in fault:
        assert code == 1 and f"No space left on device (injected by DTL_FAULT): '{last}'" in out, out
    else:
        assert code == -9, out
    assert load(last)["global_step"] == 10

    code, out = finish(dtl("train", args, run_env(tmp_path)))
    assert code == 0, out
    assert f"resuming from {last}" in out and load(last)["global_step"] == 30
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]  # no temporary left beside it


def test_a_truncated_last_checkpoint_resumes_from_the_newest_valid_one_with_a_warning(tiny_corpus, tmp_path):
    # 88 training clips, batches of 4: validation (and best.ckpt) after step 22; last.ckpt at 30
    args = tiny_run_args(tiny_corpus, "cut", 30, "trainer.check_val_every_n_epoch=1")
    run_dir = tmp_path / "outputs" / "baseline_demo" / "cut"
    code, out = finish(dtl("train", args, run_env(tmp_path)))
    assert code == 0, out
    last, best = run_dir / "checkpoints" / "last.ckpt", run_dir / "checkpoints" / "best.ckpt"
    assert (load(best)["global_step"], load(last)["global_step"]) == (22, 30)
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 3])  # cut, as a copy or a disk can leave it

    code, out = finish(dtl("train", tiny_run_args(tiny_corpus, "cut", 40, "trainer.check_val_every_n_epoch=1"),
                           run_env(tmp_path)))
    assert code == 0, out
    assert f"ignoring incomplete checkpoint {last}" in out and f"resuming from {best}" in out
    assert load(last)["global_step"] == 40


@pytest.mark.parametrize("guarded", [True, False])
def test_a_nan_loss_stops_the_run_naming_the_step_and_clips_and_keeps_the_last_good_checkpoint(
        tiny_corpus, tmp_path, guarded):
    """Without the FiniteLoss callback (the broken variant) the NaN reaches the weights and the checkpoint."""
    extra = [] if guarded else ["~callbacks.finite_loss"]
    args = tiny_run_args(tiny_corpus, "nan", 30, *extra)
    run_dir = tmp_path / "outputs" / "baseline_demo" / "nan"
    code, out = finish(dtl("train", args, run_env(tmp_path, "after_step:nan:20")))
    weights = load(run_dir / "checkpoints" / "last.ckpt")
    finite = all(torch.isfinite(v).all() for v in weights["state_dict"].values() if v.is_floating_point())
    if not guarded:
        assert code == 0 and not finite, out
        return
    assert code != 0
    assert "training loss is NaN at step 20" in out, out
    clips = out.split("the batch's clips: ", 1)[1].split(". The run stops", 1)[0].split(", ")
    assert len(clips) == 4 and all(c.count("_") >= 1 for c in clips), clips
    assert weights["global_step"] == 20 and finite
    assert not math.isnan(float(weights["state_dict"][next(iter(weights["state_dict"]))].float().sum()))
