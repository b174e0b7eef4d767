"""Loading a trained run for inference builds the inference module (EmoDiffGenerator, LipRefinement) from the run's
config and the checkpoint's weights, never the training module; checkpoints saved by the LightningModules load."""

from __future__ import annotations

import inspect
from pathlib import Path

import hydra
import lightning as L
import pytest
import torch

from experiments.run_dir import save_metadata
from lightning_modules.emodiff import EmoDiff
from lightning_modules.lip_refiner import LipRefiner
from lightning_modules.networks.emodiff_generator import EmoDiffGenerator
from lightning_modules.networks.lip_refiner import LipRefinement
from lightning_modules.trained_model import load_trained_model
from training_helpers import compose_train


def test_an_emodiff_run_loads_as_its_ema_generator(tiny_emodiff_run: Path, tiny_corpus: Path):
    trained = load_trained_model(tiny_emodiff_run)
    assert type(trained.model) is EmoDiffGenerator and not trained.model.training
    state = torch.load(trained.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    ema = {k.removeprefix("ema.module."): v for k, v in state.items() if k.startswith("ema.module.")}
    loaded = trained.model.state_dict()
    assert loaded.keys() == ema.keys() and all(torch.equal(loaded[k], ema[k]) for k in ema)
    assert not all(torch.equal(state[f"model.{k}"], ema[k]) for k in ema)  # the EMA copy, not the trained weights

    # The same tracks as the training module (what loading built before) gives for the same request and seed.
    denoiser = hydra.utils.instantiate(trained.cfg.model.denoiser)
    module = EmoDiff.load_from_checkpoint(trained.checkpoint, denoiser=denoiser, optimizer=None,
                                          weights_only=True).eval()
    torch.manual_seed(0)
    batch = {"audio": torch.randn(1, 150, int(trained.cfg.model.denoiser.audio_dim)), "init": torch.rand(1, 52),
             "emotion": torch.tensor([3]), "level": torch.tensor([2]), "style": torch.rand(1, 16, 52),
             "style_mask": torch.ones(1, 16, dtype=torch.bool)}
    expected = module.generate(batch, steps=3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(trained.model.generate(batch, steps=3, generator=torch.Generator().manual_seed(1)),
                               expected, atol=0, rtol=0)


def test_emodiff_and_its_generator_default_alike():
    """A config without an option gets the generator's default when loaded and EmoDiff's when trained."""
    generator = inspect.signature(EmoDiffGenerator).parameters
    trainer = inspect.signature(EmoDiff).parameters
    shared = (generator.keys() & trainer.keys()) - {"denoiser"}
    assert {"sample_steps", "sampler", "generation_window", "context_frames"} <= shared
    assert {name: generator[name].default for name in shared} == {name: trainer[name].default for name in shared}


def lip_refiner_run(tmp_path: Path, module: LipRefiner, state_dict: dict[str, torch.Tensor]) -> Path:
    """A run directory holding `module`'s checkpoint with `state_dict`, beside the config it was trained with."""
    cfg = compose_train(["experiment=lip_refiner_demo", "run_id=old", f"paths.output_root={tmp_path}",
                         "model.source=perturbed"])
    run = tmp_path / "run"
    save_metadata(cfg, run / "meta" / "attempt_0")
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": state_dict, "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": L.__version__,
                "BlendshapeDataModule": {"audio_mean": torch.zeros(4), "audio_std": torch.ones(4)}},
               run / "checkpoints" / "best.ckpt")
    return run


def test_lip_refiner_checkpoints_of_the_layout_before_lip_refinement_load(tmp_path: Path):
    cfg = compose_train(["experiment=lip_refiner_demo", "run_id=old", f"paths.output_root={tmp_path}",
                         "model.source=perturbed"])
    torch.manual_seed(0)
    module = hydra.utils.instantiate(cfg.model, emotion_classifier=None).eval()
    for p in module.refinement.parameters():
        torch.nn.init.normal_(p, std=0.1)  # the zero-initialised head would refine nothing
    module.refinement.bs_mean.uniform_(0.2, 0.4)
    module.refinement.bs_std.uniform_(0.05, 0.1)
    # Before LipRefinement, the module kept its network and statistics at the top of its state dict.
    old_layout = {k.removeprefix("refinement."): v for k, v in module.state_dict().items()}
    assert "net.head.3.weight" in old_layout and "bs_mean" in old_layout
    run = lip_refiner_run(tmp_path, module, old_layout)

    trained = load_trained_model(run)
    assert type(trained.model) is LipRefinement
    torch.manual_seed(1)
    source, audio = torch.rand(2, 40, 52), torch.randn(2, 40, int(cfg.model.net.audio_dim))
    mask = torch.ones(2, 40, dtype=torch.bool)
    expected = module.refine(source, audio, mask)
    assert not torch.allclose(expected, source)
    torch.testing.assert_close(trained.model.refine(source, audio, mask), expected, atol=0, rtol=0)

    # The training module resumes from it too (Lightning's on_load_checkpoint renames before loading) ...
    resumed = LipRefiner.load_from_checkpoint(run / "checkpoints" / "best.ckpt",
                                              net=hydra.utils.instantiate(cfg.model.net), weights_only=True).eval()
    torch.testing.assert_close(resumed.refine(source, audio, mask), expected, atol=0, rtol=0)
    # ... which it could not without the renaming.
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "refinement\.bs_mean"'):
        module.load_state_dict(old_layout)


def test_a_run_without_an_inference_model_is_named(tmp_path: Path):
    cfg = compose_train(["experiment=baseline_demo", "run_id=b", f"paths.output_root={tmp_path}"])
    run = tmp_path / "run"
    save_metadata(cfg, run / "meta" / "attempt_0")
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"state_dict": hydra.utils.instantiate(cfg.model).state_dict()}, run / "checkpoints" / "best.ckpt")
    with pytest.raises(ValueError, match=r"best\.ckpt: a BaselineRegressor run has no inference model"):
        load_trained_model(run)
