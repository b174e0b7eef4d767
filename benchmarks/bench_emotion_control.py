"""EmoDiff emotion control on held-out speakers, judged by the demo's blendshape emotion classifier.

Six held-out neutral sentences asked for each of the 8 emotions, per conditioning setting (label only, the style
bank, a reference clip of another speaker; guidance 1 and 3; the label path ablated); then the levels (expression
magnitude and judge confidence, levels 1 < 2 < 3) and `--intensity 0` against the speaker's neutral.

  .venv/bin/python benchmarks/bench_emotion_control.py --checkpoint outputs/emodiff_demo/demo \
      --judge outputs/emotion_classifier_demo/demo/checkpoints/best.ckpt [--settings label:1 bank:3 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import hydra
import numpy as np
import torch

from dtl_foundation.mead import EMOTIONS
from lightning_modules.trained_model import load_trained_model
from lightning_modules.emotion_classifier import BlendshapeEmotionClassifier
from lightning_modules.emotion_control import (emotion_coefficients, expression_magnitude, heldout_neutral_clips,
                                               neutral_spread, score_emotion_control, speaker_neutral)

DEFAULT_SETTINGS = ("label:1", "label:3", "bank:1", "bank:3", "clip:3", "ablated:3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="an EmoDiff run directory or checkpoint")
    parser.add_argument("--judge", required=True, help="the blendshape emotion classifier's checkpoint")
    parser.add_argument("--settings", nargs="*", default=list(DEFAULT_SETTINGS),
                        help="STYLE_FROM:GUIDANCE items; STYLE_FROM is bank, label, clip or ablated")
    parser.add_argument("--levels", action="store_true", help="also the level ordering and intensity 0 (bank)")
    parser.add_argument("--steps", type=int, default=10, help="DDIM steps")
    parser.add_argument("--out", help="write the figures as JSON here")
    ns = parser.parse_args()
    torch.manual_seed(0)
    trained = load_trained_model(ns.checkpoint)
    model = trained.model
    judge = BlendshapeEmotionClassifier.load_frozen(ns.judge)
    datamodule = hydra.utils.instantiate(trained.cfg.data)
    datamodule.setup("test")
    test, train = datamodule.datasets["test"].clips, datamodule.datasets["train"].clips
    clips = heldout_neutral_clips(test)
    references = {(c.emotion, c.level): c for c in sorted(datamodule.datasets["val"].clips,
                                                           key=lambda c: c.sentence, reverse=True)}
    style_frames = int(trained.cfg.data.style_frames)
    common = dict(steps=ns.steps, style_frames=style_frames, references=references,
                  neutral=speaker_neutral(test), coefficients=emotion_coefficients(train))
    report: dict = {"checkpoint": str(trained.checkpoint), "machine": f"{platform.node()} {os.cpu_count()} CPUs",
                    "date": time.strftime("%Y-%m-%d"), "samples": 8 * len(clips), "settings": {}}
    for setting in ns.settings:
        source, _, guidance = setting.partition(":")
        start = time.perf_counter()
        scores = score_emotion_control(model, judge, clips, style_from="bank" if source == "ablated" else source,
                                       guidance=float(guidance or 1), ablate_label=source == "ablated", **common)
        per_emotion = {e: float(np.mean([r for r, a in zip(scores.recognised, scores.asked) if a == e]))
                       for e in EMOTIONS}
        report["settings"][setting] = {"accuracy": scores.accuracy, "confidence": float(np.mean(scores.confidence)),
                                       "per_emotion": per_emotion}
        print(f"{setting:>10}: asked emotion recognised {scores.accuracy:6.1%} "
              f"({sum(scores.recognised)}/{len(scores.recognised)}), mean confidence {np.mean(scores.confidence):.3f}"
              f"  [{time.perf_counter() - start:.0f} s]", flush=True)
    if ns.levels:
        guidance = float(model.guidance_scale)
        scores = score_emotion_control(model, judge, clips, style_from="bank", guidance=guidance,
                                       levels=(1, 2, 3), **common)
        def corpus(e: str, lv: int) -> float:  # the held-out speakers' own clips of that emotion and level
            return float(np.mean([expression_magnitude(c.blendshapes, e, c.speaker, common["neutral"],
                                                       common["coefficients"])
                                  for c in test if c.emotion == e and c.level == lv]))

        table = {e: {lv: (scores.mean("magnitude", e, lv), corpus(e, lv), scores.mean("confidence", e, lv),
                          scores.mean("log_odds", e, lv)) for lv in (1, 2, 3)}
                 for e in EMOTIONS if e != "neutral"}
        report["levels"] = table
        print("level: magnitude (corpus) / judge confidence / its log-odds (bank, default guidance)")
        for e, row in table.items():
            print(f"  {e:>10}: " + "  ".join(f"L{lv} {m:.3f} ({r:.3f}) / {c:.3f} / {o:5.1f}"
                                            for lv, (m, r, c, o) in row.items()))
        zero = score_emotion_control(model, judge, clips, style_from="bank", guidance=guidance, intensity=0.0,
                                     **common)
        spread = neutral_spread(train, common["neutral"], common["coefficients"])
        report["intensity0_magnitude"], report["neutral_spread"] = float(np.nanmean(zero.magnitude)), spread
        print(f"intensity 0: mean distance from the speaker's neutral in the emotions' coefficients "
              f"{np.nanmean(zero.magnitude):.4f} (the training speakers' neutral clips: {spread:.4f})")
    if ns.out:
        Path(ns.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
