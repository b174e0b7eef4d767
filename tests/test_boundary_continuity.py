"""Boundary continuity on long audio: it flags windows generated without context and passes the ground truth."""

from __future__ import annotations

import hydra
import pytest
import torch

from datamodules.long_audio import long_audio_batch
from lightning_modules.blendshape_evaluation import BlendshapeEvaluation
from metrics.boundary_continuity import BoundaryContinuity, discontinuous, window_boundaries
from port_helpers import free_port
from training_helpers import compose_train

WINDOW, CONTEXT = 64, 10


@pytest.fixture(scope="module")
def long_batch(demo_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("boundary")
    cfg = compose_train(["experiment=emodiff_demo", "run_id=boundary", f"paths.output_root={out}",
                         f"data.corpus_dir={demo_corpus}", f"paths.cache_dir={out}/cache"])
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("test")
    return long_audio_batch(datamodule.datasets["test"], min_seconds=20.0, fps=25.0)


def independent_windows(batch: dict[str, torch.Tensor], window: int) -> torch.Tensor:
    """A generator with no context: every window moves as the truth does but starts again from the initial
    expression, as each window of EmoDiff without autoregression does."""
    truth = batch["blendshapes"]
    out = truth.clone()
    for start in range(0, truth.shape[1], window):
        piece = truth[:, start:start + window]
        out[:, start:start + window] = piece - piece[:, :1] + batch["init"][:, None]
    return out


def continuity(pred: torch.Tensor, batch: dict[str, torch.Tensor], window: int, hop: int) -> dict[str, float]:
    metric = BoundaryContinuity()
    boundaries = torch.zeros_like(batch["mask"])
    boundaries[:, window_boundaries(pred.shape[1], window, hop)] = True
    metric.update(pred, batch["blendshapes"], batch["mask"], boundaries, batch["joins"])
    return metric.compute()


def test_window_boundaries_are_each_new_windows_first_added_frame():
    assert window_boundaries(200, WINDOW, WINDOW) == [64, 128, 192]  # independent windows
    assert window_boundaries(200, WINDOW, WINDOW - CONTEXT) == [64, 118, 172]  # 10 frames of context each
    with pytest.raises(ValueError, match="hop"):
        window_boundaries(200, WINDOW, 0)


def test_long_audio_joins_one_speakers_held_out_sentences_into_twenty_second_clips(long_batch):
    lengths = long_batch["mask"].sum(1)
    assert len(lengths) >= 15 and (lengths >= 500).all()  # most of the 22 emotion-levels of the test speaker
    assert (long_batch["speaker"] == long_batch["speaker"][0]).all()
    assert long_batch["joins"].sum(1).min() >= 7  # 2-3 s sentences: at least eight of them per clip


def test_flags_independent_windows_and_passes_the_ground_truth(long_batch):
    truth = continuity(long_batch["blendshapes"], long_batch, WINDOW, WINDOW - CONTEXT)
    broken = continuity(independent_windows(long_batch, WINDOW), long_batch, WINDOW, WINDOW)
    print("ground truth:", {k: round(float(v), 3) for k, v in truth.items()})
    print("independent windows:", {k: round(float(v), 3) for k, v in broken.items()})
    assert not discontinuous(truth)
    assert abs(float(truth["boundary_velocity_ratio"]) - 1) < 0.2  # the positions mean nothing to real motion
    assert discontinuous(broken)
    assert float(broken["boundary_velocity_ratio"]) > 1.5 * float(broken["boundary_velocity_ratio_truth"])


def test_joins_between_sentences_are_left_out(long_batch):
    """Put the boundaries on the joins: with them left out no frame is a boundary, and the metric says so."""
    metric = BoundaryContinuity()
    joins = long_batch["joins"]
    metric.update(long_batch["blendshapes"], long_batch["blendshapes"], long_batch["mask"], joins, joins)
    with pytest.raises(ValueError, match="no boundary frames"):
        metric.compute()


def test_the_evaluation_logs_the_ratios_beside_the_other_metrics(long_batch):
    class Logger:
        def log_dict(self, values):
            self.values = values

    evaluation, module = BlendshapeEvaluation("test"), Logger()
    pred = independent_windows(long_batch, WINDOW)
    evaluation.update(pred, long_batch, second_sample=long_batch["blendshapes"])
    evaluation.update_long_audio(pred, long_batch, WINDOW, WINDOW)
    logged = evaluation.log_epoch(module)
    assert {"test/boundary_velocity_ratio", "test/boundary_acceleration_ratio", "test/boundary_velocity_ratio_truth",
            "test/diversity", "test/mouth_error"} <= set(logged)
    assert logged["test/boundary_velocity_ratio"] > 1.5


def _log_on_two_ranks(rank: int, port: int, agree: bool, queue) -> None:
    """Rank 0 holds a long-audio clip, rank 1 none (a test split smaller than the world). `agree=False` is the
    broken variant: each rank decides alone whether to compute the boundary metric."""
    import datetime

    import torch.distributed as dist

    import lightning_modules.blendshape_evaluation as evaluation_module

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=20))
    if not agree:
        evaluation_module.updated_on_any_rank = lambda metric: metric.update_called
    torch.manual_seed(rank)
    t = 80
    batch = {"blendshapes": torch.rand(1, t, 52), "mask": torch.ones(1, t, dtype=torch.bool),
             "loudness": torch.rand(1, t), "init": torch.rand(1, 52), "joins": torch.zeros(1, t, dtype=torch.bool)}

    class Module:
        def log_dict(self, values):
            self.values = values

    evaluation = evaluation_module.BlendshapeEvaluation("test")
    evaluation.update(batch["blendshapes"], batch)
    if rank == 0:
        evaluation.update_long_audio(batch["blendshapes"], batch, 32, 32)
    try:
        queue.put((rank, sorted(evaluation.log_epoch(Module()))))
    except Exception as error:  # noqa: BLE001 - the parent reports what each rank saw
        queue.put((rank, f"{type(error).__name__}: {error}"))
    finally:
        dist.destroy_process_group()


def _run_two_ranks(agree: bool) -> dict[int, object]:
    import multiprocessing

    port = free_port()
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    ranks = [context.Process(target=_log_on_two_ranks, args=(rank, port, agree, queue)) for rank in (0, 1)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(120)
    results = {}
    while not queue.empty():
        rank, result = queue.get()
        results[rank] = result
    return results


def test_every_rank_logs_the_boundary_metric_when_only_one_held_a_long_clip():
    """The boundary metric syncs when computed: a rank with no long clip must join the rank that has one, or the
    other waits forever (here: until gloo's timeout). Two gloo processes stand in for two GPUs."""
    results = _run_two_ranks(agree=True)
    assert set(results) == {0, 1}, results
    for rank in (0, 1):
        assert "test/boundary_velocity_ratio" in results[rank], results[rank]
    broken = _run_two_ranks(agree=False)
    print("each rank deciding alone:", broken)
    assert isinstance(broken.get(0), str) or 0 not in broken, broken  # rank 0 lost its peer mid-sync
    assert "test/boundary_velocity_ratio" not in broken[1]
