"""Training runs under faults: a full disk at a checkpoint write, a truncated last.ckpt, a NaN or inf loss."""

from __future__ import annotations

import csv
import signal

import pytest
import torch

from fault_helpers import dtl, fill_up, finish, run_env, small_tmpfs, tiny_run_args, wait_until_stopped

pytestmark = pytest.mark.slow  # real `dtl` launches, ~20-60 s each


def load(path):
    return torch.load(path, weights_only=False)


def metric_rows(run_dir, attempt: int) -> list[dict]:
    with open(run_dir / "csv" / f"attempt_{attempt}" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_a_full_disk_during_a_checkpoint_write_is_a_clear_error_and_keeps_the_previous_one(tiny_corpus, tmp_path):
    """A real full disk: the checkpoints on a small tmpfs, every free byte taken between the saves at steps 10 and
    20. The run stops naming last.ckpt; the step-10 file stays whole and the same command resumes from it. Before,
    the first launch is killed inside its W&B id write: no half id is left for the next launch to adopt."""
    args = tiny_run_args(tiny_corpus, "full", steps=30)
    run_dir = tmp_path / "outputs" / "baseline_demo" / "full"
    checkpoints, last = run_dir / "checkpoints", run_dir / "checkpoints" / "last.ckpt"
    code, out = finish(dtl("train", args, run_env(tmp_path, "mid_write:kill:wandb_id")))
    assert code == -signal.SIGKILL and not (run_dir / "wandb_id").exists(), out
    with small_tmpfs(checkpoints):
        run = dtl("train", args, run_env(tmp_path, "after_step:stop:15"))
        wait_until_stopped(run)
        filler = fill_up(checkpoints)
        run.send_signal(signal.SIGCONT)
        code, out = finish(run)
        assert code == 1 and f"No space left on device; not written (a previous version is kept): '{last}'" in out, out
        assert load(last)["global_step"] == 10
        assert sorted(p.name for p in checkpoints.iterdir()) == ["filler", "last.ckpt"]  # no temporary holds space

        filler.unlink()
        code, out = finish(dtl("train", args, run_env(tmp_path)))
        assert code == 0, out
        assert f"resuming from {last}" in out and load(last)["global_step"] == 30
    wandb_id = (run_dir / "wandb_id").read_text().strip()
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_id) == 8 and len(runs) == 2 and all(r.name.endswith(f"-{wandb_id}") for r in runs), runs


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


@pytest.mark.parametrize("guard", ["stop", "skip", "none"])
def test_a_nan_loss_stops_the_run_naming_the_step_and_clips_or_is_skipped_when_asked(tiny_corpus, tmp_path, guard):
    """Stopped: the error names the step and the batch's clips, the checkpoint keeps the last finite weights.
    Skipped (callbacks.finite_loss.skip_batches=true): the run ends at its last step, the batch warned about and
    counted, the weights finite. Without the FiniteLoss callback (the broken variant) NaN reaches the weights."""
    extra = {"stop": [], "skip": ["callbacks.finite_loss.skip_batches=true"], "none": ["~callbacks.finite_loss"]}
    run_dir = tmp_path / "outputs" / "baseline_demo" / "nan"
    code, out = finish(dtl("train", tiny_run_args(tiny_corpus, "nan", 30, *extra[guard]),
                           run_env(tmp_path, "after_step:nan:20")))
    weights = load(run_dir / "checkpoints" / "last.ckpt")
    finite = all(torch.isfinite(v).all() for v in weights["state_dict"].values() if v.is_floating_point())
    if guard == "none":
        assert code == 0 and not finite, out
        return
    assert finite
    if guard == "skip":
        assert code == 0, out
        assert "training loss is NaN at step 20 " in out and "Skipped (callbacks.finite_loss.skip_batches=true): " \
            "1 batch(es) so far" in out, out
        assert weights["global_step"] == 30
        skipped = [row["train/nonfinite_skipped"] for row in metric_rows(run_dir, 0) if row["train/nonfinite_skipped"]]
        assert skipped and float(skipped[-1]) == 1.0
        return
    assert code != 0
    assert "training loss is NaN at step 20" in out, out
    clips = out.split("the batch's clips: ", 1)[1].split(". The run stops", 1)[0].split(", ")
    assert len(clips) == 4 and all(c.count("_") >= 1 for c in clips), clips
    assert weights["global_step"] == 20
