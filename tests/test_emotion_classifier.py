"""The blendshape emotion classifier learns the 8 emotions on held-out speakers; EmotionAccuracy reports it."""

from __future__ import annotations

import hydra
import pytest
import torch

from lightning_modules.emotion_classifier import BlendshapeEmotionClassifier
from metrics.blendshape import EmotionAccuracy


@pytest.mark.slow
def test_trained_classifier_separates_emotions_on_held_out_speakers(trained_emotion_classifier):
    cfg = trained_emotion_classifier["cfg"]
    accuracy = trained_emotion_classifier["metrics"]["test/accuracy"]
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("test")
    torch.manual_seed(0)
    untrained = hydra.utils.instantiate(cfg.model).eval()
    metric = EmotionAccuracy(untrained)
    for batch in datamodule.test_dataloader():
        metric.update(batch["blendshapes"], batch["mask"], batch["emotion"])
    chance = float(metric.compute()["accuracy"])
    print(f"emotion accuracy on the held-out speaker: trained {accuracy:.3f}, untrained {chance:.3f}")
    assert accuracy >= 0.8 and accuracy > chance + 0.4


@pytest.mark.slow
def test_frozen_classifier_and_emotion_accuracy_agree(trained_emotion_classifier):
    cfg = trained_emotion_classifier["cfg"]
    frozen = BlendshapeEmotionClassifier.load_frozen(trained_emotion_classifier["checkpoint"])
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("test")
    batch = next(iter(datamodule.test_dataloader()))
    again = BlendshapeEmotionClassifier.load_frozen(trained_emotion_classifier["checkpoint"])
    logits = frozen(batch["blendshapes"], batch["mask"])
    torch.testing.assert_close(logits, again(batch["blendshapes"], batch["mask"]))

    metric = EmotionAccuracy(frozen)
    metric.update(batch["blendshapes"], batch["mask"], batch["emotion"])
    probabilities = logits.softmax(-1)
    result = metric.compute()
    expected = (probabilities.argmax(-1) == batch["emotion"]).float().mean()
    torch.testing.assert_close(result["accuracy"], expected)
    torch.testing.assert_close(result["confidence"],
                               probabilities.gather(1, batch["emotion"][:, None]).mean(), rtol=1e-5, atol=1e-6)
