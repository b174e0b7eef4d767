"""Shared fixtures: the demo corpus (built once per session) and a quiet, offline W&B."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HYDRA_FULL_ERROR", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one OpenMP thread per xdist worker: workers' spinning thread pools fighting over the cores slow training 10-30x
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]

# Tests sharing an expensive session fixture run on one xdist worker (`-n auto --dist loadgroup`, as `make test`
# does), which builds it once; one local Slurm per machine, so its tests share a worker too.
XDIST_GROUPS = {
    "local_slurm": "slurm",
    "trained_emodiff": "trained_blendshape_models",
    "trained_emotion_classifier": "trained_blendshape_models",
    "video_corpus": "rendered_video_corpus",
    "talking_corpus": "renderer_talking_corpus",
}


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups off the markers
def pytest_collection_modifyitems(config, items):
    for item in items:
        groups = {XDIST_GROUPS[name] for name in getattr(item, "fixturenames", ()) if name in XDIST_GROUPS}
        assert len(groups) <= 1, f"{item.nodeid} needs fixtures of two xdist groups {sorted(groups)}: merge them"
        if groups:
            item.add_marker(pytest.mark.xdist_group(groups.pop()))


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    """The default demo corpus (6 speakers x 22 emotion-levels x 10 sentences); DTL_TEST_DEMO_CORPUS reuses one."""
    from datamodules.demo.build import build_demo_corpus

    reuse = os.environ.get("DTL_TEST_DEMO_CORPUS")
    root = Path(reuse) if reuse else tmp_path_factory.mktemp("demo") / "corpus"
    return build_demo_corpus(root, progress=False)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """4 speakers x 22 emotion-levels x 2 sentences, for runs that exercise the machinery, not learning."""
    from datamodules.demo.build import build_demo_corpus

    return build_demo_corpus(tmp_path_factory.mktemp("tiny") / "corpus", speakers=4, sentences=2, progress=False)


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory) -> dict[str, str]:
    """A real single-node Slurm started by slurm/local/start.sh; its environment (SLURM_CONF) for subprocesses.

    A Slurm that cannot start fails the test with start.sh's message (`make test` installs slurm-wlm and munge).
    """
    import subprocess

    state = tmp_path_factory.mktemp("slurm")
    started = subprocess.run([str(REPO / "slurm" / "local" / "start.sh"), str(state), "2"], capture_output=True,
                             text=True, timeout=120)
    assert started.returncode == 0, f"local Slurm did not start:\n{started.stdout}\n{started.stderr}"
    env = dict(os.environ, SLURM_CONF=str(state / "slurm.conf"))
    yield env
    subprocess.run([str(REPO / "slurm" / "local" / "stop.sh"), str(state)], timeout=60)


@pytest.fixture(scope="session")
def trained_emotion_classifier(demo_corpus, tmp_path_factory) -> dict:
    """The blendshape emotion classifier trained through the spine on the demo corpus (a few hundred steps)."""
    from experiments.train import train
    from training_helpers import compose_train

    out = tmp_path_factory.mktemp("emotion_classifier")
    cfg = compose_train(["experiment=emotion_classifier_demo", "run_id=judge", f"paths.output_root={out}",
                         f"data.corpus_dir={demo_corpus}", f"paths.cache_dir={out}/cache", "trainer.accelerator=cpu"])
    metrics = train(cfg)
    return {"cfg": cfg, "metrics": metrics,
            "checkpoint": out / "emotion_classifier_demo" / "judge" / "checkpoints" / "best.ckpt"}


@pytest.fixture(scope="session")
def trained_emodiff(demo_corpus, tmp_path_factory) -> dict:
    """EmoDiff trained briefly (300 steps) through the spine; its config, metrics, model (EMA) and datamodule."""
    import hydra

    from experiments.train import train
    from lightning_modules.emodiff import EmoDiff
    from training_helpers import compose_train

    out = tmp_path_factory.mktemp("emodiff")
    cfg = compose_train(["experiment=emodiff_demo", "run_id=learn", f"paths.output_root={out}",
                         f"data.corpus_dir={demo_corpus}", f"paths.cache_dir={out}/cache",
                         "trainer.max_steps=300", "trainer.check_val_every_n_epoch=10",
                         "trainer.accelerator=cpu"])
    metrics = train(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("test")
    model = EmoDiff.load_from_checkpoint(out / "emodiff_demo" / "learn" / "checkpoints" / "best.ckpt",
                                         denoiser=hydra.utils.instantiate(cfg.model.denoiser),
                                         optimizer=None, weights_only=True)
    return {"cfg": cfg, "metrics": metrics, "datamodule": datamodule, "model": model.eval(),
            "run_dir": out / "emodiff_demo" / "learn"}


@pytest.fixture(scope="session")
def tiny_emodiff_run(tiny_corpus, tmp_path_factory) -> Path:
    """An EmoDiff run directory trained for two steps on the tiny corpus: enough for `dtl generate` to run."""
    from experiments.train import train
    from training_helpers import compose_train

    out = tmp_path_factory.mktemp("tiny_emodiff")
    train(compose_train(["experiment=emodiff_demo", "run_id=tiny", f"paths.output_root={out}",
                         f"data.corpus_dir={tiny_corpus}", "data.build_demo=false", f"paths.cache_dir={out}/cache",
                         "trainer.max_steps=2", "logger=csv", "test=false", "trainer.accelerator=cpu",
                         "callbacks.blendshape_figure=null"]))
    return out / "emodiff_demo" / "tiny"
