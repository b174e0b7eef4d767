"""Lip refinement: trained briefly, it improves the mouth of EmoDiff samples on held-out speakers and keeps
their emotion; untrained, it changes nothing; its training corruptions touch only the mouth."""

from __future__ import annotations

import hydra
import pytest
import torch

from dtl_foundation.arkit import MOUTH_INDICES
from experiments.train import train
from lightning_modules.mouth_perturbation import perturb_mouth
from training_helpers import compose_train, ground_truth_sync

NON_MOUTH = [i for i in range(52) if i not in MOUTH_INDICES]


@pytest.fixture(scope="module")
def refined_run(trained_emodiff, trained_emotion_classifier, tmp_path_factory):
    """The lip refiner trained through the spine on perturbed ground truth; tested on EmoDiff's samples."""
    out = tmp_path_factory.mktemp("lip_refiner")
    cfg = compose_train(["experiment=lip_refiner_demo", "run_id=learn", f"paths.output_root={out}",
                         f"data.corpus_dir={trained_emodiff['cfg'].data.corpus_dir}",
                         f"paths.cache_dir={trained_emodiff['cfg'].paths.cache_dir}",
                         f"model.emodiff_run={trained_emodiff['run_dir']}",
                         f"model.emotion_classifier={trained_emotion_classifier['checkpoint']}",
                         "trainer.max_steps=400", "trainer.check_val_every_n_epoch=100", "trainer.accelerator=cpu"])
    metrics = train(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("test")
    return {"cfg": cfg, "metrics": metrics, "truth_sync": ground_truth_sync(datamodule)}


@pytest.mark.slow
def test_refinement_improves_emodiff_mouths_and_keeps_their_emotion(refined_run):
    m, truth = refined_run["metrics"], refined_run["truth_sync"]
    print("held-out speakers, EmoDiff samples -> refined: "
          f"mouth error {m['test/source/mouth_error']:.4f} -> {m['test/mouth_error']:.4f}; "
          f"sync {m['test/source/sync']:.3f} -> {m['test/sync']:.3f} (ground truth {truth:.3f}); "
          f"emotion accuracy {m['test/source/emotion_accuracy']:.3f} -> {m['test/emotion_accuracy']:.3f}")
    assert m["test/mouth_error"] < 0.95 * m["test/source/mouth_error"]
    # Better sync is the corpus's own: EmoDiff's samples can follow loudness more tightly than real mouths do.
    assert abs(m["test/sync"] - truth) < abs(m["test/source/sync"] - truth)
    assert m["test/emotion_accuracy"] >= m["test/source/emotion_accuracy"] - 0.05


def test_untrained_refiner_changes_nothing(tiny_corpus, tmp_path):
    cfg = compose_train(["experiment=lip_refiner_demo", "debug=fast", "run_id=t", f"paths.output_root={tmp_path}",
                         f"data.corpus_dir={tiny_corpus}", f"paths.cache_dir={tmp_path}/cache"])
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    model = hydra.utils.instantiate(cfg.model).eval()
    model.refinement.bs_mean.copy_(torch.as_tensor(datamodule.blendshape_mean))
    model.refinement.bs_std.copy_(torch.as_tensor(datamodule.blendshape_std))
    batch = next(iter(datamodule.val_dataloader()))
    source = perturb_mouth(batch["blendshapes"], batch["mask"], torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.refine(source, batch["audio"], batch["mask"]), source)


def test_perturbation_changes_only_the_mouth_and_is_seeded():
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(8, 64, 52, generator=generator)
    mask = torch.ones(8, 64, dtype=torch.bool)
    mask[0, 40:] = False
    a = perturb_mouth(x, mask, torch.Generator().manual_seed(1))
    b = perturb_mouth(x, mask, torch.Generator().manual_seed(1))
    c = perturb_mouth(x, mask, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a[..., NON_MOUTH], x[..., NON_MOUTH])
    changed = (a[..., MOUTH_INDICES] - x[..., MOUTH_INDICES]).abs().mean(dim=(1, 2))
    assert (changed > 0.01).all() and a.min() >= 0 and a.max() <= 1


def test_refiner_needs_an_emodiff_run_to_learn_from_its_samples():
    from lightning_modules.lip_refiner import LipRefiner
    from lightning_modules.networks.lip_refiner import LipRefinerNet

    with pytest.raises(ValueError, match="needs emodiff_run"):
        LipRefiner(LipRefinerNet(16), source="mixed")
    with pytest.raises(ValueError, match="source must be one of"):
        LipRefiner(LipRefinerNet(16), source="ground_truth")
