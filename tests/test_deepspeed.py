"""DeepSpeed presets: the config Lightning builds from each preset trains EmoDiff under ZeRO-2/3; `dtl export`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import torch

from experiments import export
from experiments.run_dir import save_metadata
from experiments.train import CONFIG_DIR
from lightning_modules.trained_model import load_trained_model
from port_helpers import free_port
from training_helpers import compose_train

REPO = Path(__file__).resolve().parents[1]
PRESETS = {2: "deepspeed_stage2", 3: "deepspeed_stage3"}
STEPS = 20
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")
# A small denoiser and short windows: the DeepSpeed machinery is under test here, not EmoDiff's quality.
SMALL_EMODIFF = ["model.denoiser.dim=32", "model.denoiser.layers=1", "model.denoiser.heads=2", "data.window=32",
                 "data.style_frames=32", "data.batch_size=4"]


@pytest.fixture(scope="module")
def process_group():
    """A one-process gloo group, as a launcher would set it up, for deepspeed.initialize on CPU."""
    import deepspeed
    import deepspeed.ops

    env = dict(zip(LAUNCHER_ENV, ("127.0.0.1", str(free_port()), "0", "1", "0")))
    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # On CPU, DeepSpeed's communication backend JIT-compiles its shared-memory all-reduce op (~1-3 min of g++)
    # when it can; that op serves only CPU tensor-parallel inference and never ZeRO training, and GPUs use NCCL.
    # Marking it unbuildable (DeepSpeed's own compatibility table, which it then respects) skips the compile.
    compatible = deepspeed.ops.__compatible_ops__
    saved_shm = compatible.get("deepspeed_shm_comm")
    compatible["deepspeed_shm_comm"] = False
    deepspeed.init_distributed(dist_backend="gloo")
    yield
    torch.distributed.destroy_process_group()
    compatible["deepspeed_shm_comm"] = saved_shm
    for k, v in saved_env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def compose_on_cpu(stage: int, corpus: Path, out: Path, extra=()):
    return compose_train(["experiment=emodiff_demo", f"trainer={PRESETS[stage]}", "run_id=ds",
                          f"paths.output_root={out}", f"data.corpus_dir={corpus}", "data.build_demo=false",
                          f"paths.cache_dir={out}/cache", "trainer.accelerator=cpu", "trainer.devices=1", *extra])


@pytest.fixture(scope="module")
def emodiff_data(tiny_corpus, tmp_path_factory):
    """The tiny corpus's datamodule (scanned, features cached) and one fixed training batch."""
    out = tmp_path_factory.mktemp("deepspeed")
    cfg = compose_on_cpu(2, tiny_corpus, out, extra=SMALL_EMODIFF)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    torch.manual_seed(0)
    return {"out": out, "corpus": tiny_corpus, "datamodule": datamodule,
            "batch": next(iter(datamodule.train_dataloader()))}


def lightning_deepspeed_setup(cfg, datamodule):
    """The trainer from the preset (its strategy built by Hydra) and the EmoDiff module, attached the way
    `Trainer.fit` attaches them; the DeepSpeed config is then completed by Lightning's own code.

    Two Lightning internals, for want of a public route on CPU: `Trainer.fit` with the DeepSpeed strategy refuses
    a CPU accelerator (test_lightning_refuses_the_presets_on_cpu), and past that check its device-index validation
    refuses CPU devices too, so the config it completes (batch size from the loader, accumulation, clipping) is
    reached only through `_data_connector.attach_data` and `_init_config_if_needed`. The public fit path itself runs
    on a GPU: test_deepspeed_stage2_fit_on_gpu_exports_loadable_weights."""
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[], enable_progress_bar=False)
    module = hydra.utils.instantiate(cfg.model)
    trainer.strategy.connect(module)
    module.trainer = trainer
    trainer._data_connector.attach_data(module, datamodule=datamodule)
    module.setup("fit")  # the corpus statistics into the module's buffers, as in a fit
    trainer.strategy._init_config_if_needed()  # DeepSpeedStrategy.setup's first step: batch, clipping, precision
    return trainer, module


def gathered_state(engine) -> dict[str, torch.Tensor]:
    """The engine's module state with ZeRO-3 partitions gathered (a no-op under ZeRO-2)."""
    import deepspeed

    module = engine.module
    with deepspeed.zero.GatheredParameters(list(module.parameters()), modifier_rank=None):
        return {k: v.detach().clone() for k, v in module.state_dict().items()}


def engine_loss(engine, module, batch) -> torch.Tensor:
    """EmoDiff's own loss through the engine's forward (its autocast, ZeRO-3's gathering), the way Lightning runs
    training_step: the module's forward is the loss for this one call."""
    module.forward = module.diffusion_loss
    try:
        return engine(batch)["loss"]
    finally:
        del module.forward


@pytest.fixture(scope="module", params=[2, 3], ids=["zero2", "zero3"])
def trained(request, process_group, emodiff_data):
    """EmoDiff trained STEPS steps on one batch by deepspeed.initialize with the preset's Lightning-built config."""
    import deepspeed

    stage = request.param
    cfg = compose_on_cpu(stage, emodiff_data["corpus"], emodiff_data["out"], extra=SMALL_EMODIFF)
    trainer, module = lightning_deepspeed_setup(cfg, emodiff_data["datamodule"])
    optimization = module.configure_optimizers()  # what Lightning's DeepSpeed strategy hands deepspeed.initialize
    optimizer, scheduler = optimization["optimizer"], optimization["lr_scheduler"]["scheduler"]
    # The arguments DeepSpeedStrategy._setup_model_and_optimizer passes (less the CUDA device index).
    trainable = [p for p in module.parameters() if p.requires_grad]
    engine, _, _, _ = deepspeed.initialize(model=module, model_parameters=trainable, optimizer=optimizer,
                                           lr_scheduler=scheduler, config=trainer.strategy.config,
                                           dist_init_required=False)
    engine.lr_scheduler = None  # as Lightning does: it steps the scheduler itself
    batch = emodiff_data["batch"]
    losses = []
    for step in range(STEPS):
        torch.manual_seed(0)  # the same diffusion times, noise and dropout every step: a deterministic objective
        loss = engine_loss(engine, module, batch)
        engine.backward(loss)
        engine.step()
        module.on_train_batch_end(None, batch, step)  # EmoDiff's EMA update, as Lightning calls it
        losses.append(loss.item())
    trainer.strategy.model = engine
    return {"stage": stage, "cfg": cfg, "trainer": trainer, "engine": engine, "module": module, "losses": losses}


@pytest.mark.parametrize("stage", [2, 3])
def test_presets_compose_with_each_experiment_and_build_the_strategy(stage, tmp_path):
    from lightning.pytorch.strategies import DeepSpeedStrategy

    experiments = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))
    assert {"emodiff_demo", "baseline_demo"} <= set(experiments)
    for experiment in experiments:
        cfg = compose_train([f"experiment={experiment}", f"trainer={PRESETS[stage]}", "run_id=x",
                             f"paths.output_root={tmp_path}"])
        assert cfg.experiment_name == experiment
        assert cfg.trainer.accelerator == "gpu" and cfg.trainer.precision == "32-true"
        assert cfg.trainer.max_steps == compose_train([f"experiment={experiment}", "run_id=x"]).trainer.max_steps
    strategy = hydra.utils.instantiate(cfg.trainer.strategy)
    assert isinstance(strategy, DeepSpeedStrategy) and type(strategy.config) is dict
    assert strategy.config["zero_optimization"]["stage"] == stage
    assert strategy.config["torch_autocast"] == {"enabled": True, "dtype": "bfloat16"}
    assert "bf16" not in strategy.config  # the module is not cast: EMA and normalisation stay fp32


def test_lightning_refuses_the_presets_on_cpu(tmp_path):
    """DESIGN: Lightning's DeepSpeedStrategy wants CUDA; the CPU tests drive deepspeed.initialize themselves."""
    cfg = compose_on_cpu(2, tmp_path / "corpus", tmp_path)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[])
    with pytest.raises(RuntimeError, match="only supported on CUDA"):
        trainer.strategy.setup_environment()


@pytest.mark.slow
def test_lightning_config_is_accepted_and_trains_emodiff(trained):
    trainer, engine, losses = trained["trainer"], trained["engine"], trained["losses"]
    config = trainer.strategy.config
    # What Lightning added from the trainer and the data: the loader's batch size, accumulation, clipping.
    assert config["train_micro_batch_size_per_gpu"] == trained["cfg"].data.batch_size
    assert config["gradient_accumulation_steps"] == 1
    assert config["gradient_clipping"] == trained["cfg"].trainer.gradient_clip_val == 1.0
    assert engine.zero_optimization_stage() == trained["stage"]
    assert engine.torch_autocast_enabled() and engine.torch_autocast_dtype() == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in engine.module.parameters())
    print(f"ZeRO-{trained['stage']} losses: {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.85 * losses[0]
    assert sum(b < a for a, b in zip(losses, losses[1:])) >= 0.8 * (STEPS - 1)  # steadily, not by one jump


@pytest.mark.slow
def test_exported_checkpoint_equals_the_engine_weights(trained, tmp_path):
    trainer, engine = trained["trainer"], trained["engine"]
    run_dir = tmp_path / "run"
    checkpoint_dir = run_dir / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(checkpoint_dir)  # Lightning's DeepSpeed layout: a directory, tag 'checkpoint'
    assert checkpoint_dir.is_dir() and (checkpoint_dir / "latest").read_text().strip() == "checkpoint"

    assert export.main([str(run_dir)]) == 0
    exported_path = run_dir / "checkpoints" / "last.fp32.ckpt"
    assert sorted(p.name for p in exported_path.parent.iterdir()) == ["last.ckpt", "last.fp32.ckpt"]  # no temporary
    exported = torch.load(exported_path, map_location="cpu", weights_only=True)

    engine_state = gathered_state(engine)
    weights = exported["state_dict"]
    assert set(weights) == set(engine_state)
    trainable = {f"model.denoiser.{n}" for n, _ in engine.module.denoiser.named_parameters()}
    assert trainable and trainable <= set(weights)
    for name, tensor in engine_state.items():
        assert weights[name].dtype == tensor.dtype, name
        assert torch.equal(weights[name], tensor), name
    assert exported["global_step"] == trainer.global_step and "hyper_parameters" in exported
    assert exported["BlendshapeDataModule"]["audio_mean"] is not None  # what `dtl generate` reads

    fresh = hydra.utils.instantiate(trained["cfg"].model)
    fresh.load_state_dict(weights)  # strict: every key of the module, nothing else
    assert torch.equal(fresh.generator.bs_std, engine_state["ema.module.bs_std"])
    assert not torch.equal(fresh.generator.bs_std, torch.ones(52))
    save_metadata(trained["cfg"], run_dir / "meta" / "attempt_0")  # what `dtl train` writes beside checkpoints
    loaded = load_trained_model(exported_path).model.state_dict()  # the checkpoint loader of `dtl generate`
    assert loaded.keys() == {k.removeprefix("ema.module.") for k in weights if k.startswith("ema.module.")}
    assert all(torch.equal(v, weights[f"ema.module.{k}"]) for k, v in loaded.items())

    other = tmp_path / "elsewhere" / "model.pt"
    assert export.main([str(checkpoint_dir), "--out", str(other)]) == 0
    again = torch.load(other, map_location="cpu", weights_only=True)["state_dict"]
    assert all(torch.equal(again[k], weights[k]) for k in weights)


@pytest.mark.slow
def test_export_refuses_state_that_needs_unpickling_code(trained, tmp_path, capsys):
    checkpoint_dir = tmp_path / "odd.ckpt"
    trained["engine"].save_checkpoint(checkpoint_dir, client_state={"hyper_parameters": {"act": torch.nn.ReLU()}},
                                      tag="checkpoint")
    out = tmp_path / "odd.fp32.ckpt"
    assert export.main([str(checkpoint_dir), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert str(checkpoint_dir) in err and "weights_only=True" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.ckpt"]  # neither the file nor a temporary one


def test_export_names_what_is_not_a_zero_checkpoint(tmp_path, capsys):
    single = tmp_path / "single.ckpt"
    torch.save({"state_dict": {}}, single)
    empty_run = tmp_path / "run"
    (empty_run / "checkpoints").mkdir(parents=True)
    dangling = tmp_path / "dangling.ckpt"
    dangling.mkdir()
    (dangling / "latest").write_text("checkpoint")
    cases = {single: "single-file checkpoint", empty_run: "not a DeepSpeed ZeRO checkpoint directory",
             dangling: "names 'checkpoint', which holds no", tmp_path / "absent": "no such run directory"}
    for path, problem in cases.items():
        assert export.main([str(path)]) == 1
        err = capsys.readouterr().err
        assert str(path) in err and problem in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling.ckpt", "run", "single.ckpt"]  # nothing written


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (Lightning's DeepSpeed refuses CPU)")
def test_deepspeed_stage2_fit_on_gpu_exports_loadable_weights(tiny_corpus, tmp_path):
    """A real `dtl train ... trainer=deepspeed_stage2` (bf16 autocast), then `dtl export`, then the model loads."""
    args = ["train", "experiment=emodiff_demo", "trainer=deepspeed_stage2", "trainer.devices=1", "run_id=gpu",
            f"paths.output_root={tmp_path}", f"data.corpus_dir={tiny_corpus}", "data.build_demo=false",
            f"paths.cache_dir={tmp_path}/cache", "data.batch_size=8", "trainer.max_steps=6",
            "callbacks.last_checkpoint.every_n_train_steps=3", "test=false"]
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}  # Lightning sets up its own group
    done = subprocess.run([sys.executable, "-m", "experiments.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    run_dir = tmp_path / "emodiff_demo" / "gpu"
    assert export.is_zero_checkpoint(run_dir / "checkpoints" / "last.ckpt")

    assert export.main([str(run_dir / "checkpoints" / "last.ckpt")]) == 0
    exported_path = run_dir / "checkpoints" / "last.fp32.ckpt"
    exported = torch.load(exported_path, map_location="cpu", weights_only=True)
    assert exported["global_step"] == 6
    assert all(v.dtype != torch.bfloat16 for v in exported["state_dict"].values())
    assert all(torch.isfinite(v).all() for v in exported["state_dict"].values() if v.is_floating_point())
    trained = load_trained_model(exported_path)  # the checkpoint loader of `dtl generate`
    state = trained.model.state_dict()  # the EMA generator's
    assert state and all(torch.equal(v, exported["state_dict"][f"ema.module.{k}"]) for k, v in state.items())
