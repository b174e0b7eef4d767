"""EmoDiff sample quality per sampler and step count on held-out speakers, against DDIM-50.

Windows of the validation and test speakers (both unseen in training), each generated twice (seeds 0 and 1,
the same seeds for every sampler) with the label, level, style clip and first frame of the window, guidance at
the model's scale. Per sampler: mouth error, audio-mouth sync, upper-face dynamics deviation (draw 0), the
blendshape judge's emotion accuracy (draw 0), sample diversity (draw 0 vs 1), and the Fréchet distance of
per-window statistics (the mean and std over frames of each coefficient) from draw 1 to DDIM-50's draw 0;
DDIM-50's own row holds its seed-to-seed floor, the largest distance between its draws of seeds 0, 1 and 2
(estimation noise alone); also the same distance to the real windows. A sampler passes when every metric is
within --tolerance of DDIM-50's (the Fréchet distance: of that floor); the default is the passing sampler
with the fewest network calls.

  .venv/bin/python benchmarks/bench_sampler_quality.py --checkpoint outputs/emodiff_demo/demo \
      --judge outputs/emotion_classifier_demo/demo/checkpoints/best.ckpt [--windows 192] [--out FILE.json]
      [--samplers ddim:50 dpmpp_2m:8 dpmpp_2m:8@bf16 ...]   (@bf16: sampling_precision bf16, else fp32)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import hydra
import numpy as np
import torch
from torch.utils.data import ConcatDataset, Subset, default_collate

from dtl_foundation.diffusion import SAMPLERS, network_calls
from lightning_modules.emotion_classifier import BlendshapeEmotionClassifier
from lightning_modules.trained_model import load_trained_model
from metrics.blendshape import (AudioMouthSync, EmotionAccuracy, MouthError, SampleDiversity,
                                UpperFaceDynamicsDeviation)
from metrics.frechet import frechet_distance

DEFAULT_SAMPLERS = ("ddim:50", "ddim:20", "ddim:10", "dpmpp_2m:20", "dpmpp_2m:10", "dpmpp_2m:8", "dpmpp_2m:6",
                    "dpmpp_2m:5", "dpmpp_2m:4", "heun:10", "heun:6", "heun:4")
HIGHER_IS_BETTER = {"mouth_error": False, "sync": True, "upper_face_dd": False, "emotion_accuracy": True,
                    "frechet_to_ddim50": False}
"""The metrics judged one-sided against DDIM-50; diversity must stay within the tolerance both ways."""


def window_statistics(tracks: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """(B, 104): per window, the mean and std over its real frames of each of the 52 coefficients."""
    m = mask[..., None].double()
    n = m.sum(1).clamp(min=1)
    x = tracks.double()
    mean = (x * m).sum(1) / n
    std = (((x - mean[:, None]) ** 2 * m).sum(1) / n).sqrt()
    return torch.cat([mean, std], dim=1).numpy()


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def heldout_batches(datamodule, windows: int, batch_size: int) -> list[dict[str, torch.Tensor]]:
    """`windows` windows spread evenly over the validation and test speakers' windows, batched."""
    held_out = ConcatDataset([datamodule.datasets["val"], datamodule.datasets["test"]])
    if windows > len(held_out):
        raise ValueError(f"{windows} windows asked, the held-out speakers have {len(held_out)}")
    picked = Subset(held_out, np.linspace(0, len(held_out) - 1, windows).round().astype(int).tolist())
    return [default_collate([picked[i] for i in range(s, min(s + batch_size, windows))])
            for s in range(0, windows, batch_size)]


def sample(generator, batches, sampler: str, steps: int, seed: int, bf16: bool = False) -> list[torch.Tensor]:
    generator.sampling_precision = "bf16" if bf16 else "fp32"
    out = []
    with torch.inference_mode():
        for i, batch in enumerate(batches):
            rng = torch.Generator().manual_seed(seed * 1000 + i)
            out.append(generator.generate(batch, steps=steps, sampler=sampler, generator=rng).float())
    return out


def parse_sampler(spec: str) -> tuple[str, int, bool]:
    """NAME:STEPS, or NAME:STEPS@bf16 for sampling under bfloat16 autocast."""
    spec, _, precision = spec.partition("@")
    name, _, steps = spec.partition(":")
    if name not in SAMPLERS or not steps.isdigit() or precision not in ("", "bf16"):
        raise SystemExit(f"--samplers: {spec!r}: NAME:STEPS[@bf16] with NAME in {SAMPLERS}")
    return name, int(steps), precision == "bf16"


def score(draws: list[list[torch.Tensor]], batches, judge, reference: np.ndarray | None,
          real: np.ndarray) -> tuple[dict[str, float], list[np.ndarray]]:
    mouth, sync, upper, emotion, diversity = (MouthError(), AudioMouthSync(), UpperFaceDynamicsDeviation(),
                                              EmotionAccuracy(judge), SampleDiversity())
    for first, second, batch in zip(*draws, batches):
        mouth.update(first, batch["blendshapes"], batch["mask"])
        sync.update(first, batch["loudness"], batch["mask"])
        upper.update(first, batch["blendshapes"], batch["mask"])
        emotion.update(first, batch["mask"], batch["emotion"])
        diversity.update(torch.stack([first, second]), batch["mask"])
    stats = [np.concatenate([window_statistics(t, b["mask"]) for t, b in zip(d, batches)]) for d in draws]
    return {"mouth_error": float(mouth.compute()), "sync": float(sync.compute()["sync"]),
            "upper_face_dd": float(upper.compute()), "emotion_accuracy": float(emotion.compute()["accuracy"]),
            "diversity": float(diversity.compute()),
            "frechet_to_ddim50": frechet(stats[1], stats[0] if reference is None else reference),
            "frechet_to_data": frechet(stats[0], real)}, stats


def passes(row: dict[str, float], reference: dict[str, float], tolerance: float) -> list[str]:
    """The metrics on which `row` is worse than `reference` by more than `tolerance` (relative)."""
    failed = [name for name, higher in HIGHER_IS_BETTER.items()
              if (row[name] < reference[name] * (1 - tolerance) if higher else
                  row[name] > reference[name] * (1 + tolerance))]
    if abs(row["diversity"] - reference["diversity"]) > tolerance * reference["diversity"]:
        failed.append("diversity")
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="an EmoDiff run directory or checkpoint")
    parser.add_argument("--judge", required=True, help="the blendshape emotion classifier's checkpoint")
    parser.add_argument("--samplers", nargs="*", default=list(DEFAULT_SAMPLERS),
                        help="NAME:STEPS[@bf16] (bf16: under bfloat16 autocast), fp32 DDIM-50 first")
    parser.add_argument("--windows", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--out", help="write the table as JSON here")
    ns = parser.parse_args()
    specs = [parse_sampler(spec) for spec in ns.samplers]
    if specs[0] != ("ddim", 50, False):
        raise SystemExit("--samplers: the first must be ddim:50 (fp32), the reference")
    trained = load_trained_model(ns.checkpoint)
    generator = trained.model
    judge = BlendshapeEmotionClassifier.load_frozen(ns.judge)
    datamodule = hydra.utils.instantiate(trained.cfg.data)
    datamodule.setup("test")
    batches = heldout_batches(datamodule, ns.windows, ns.batch_size)
    real = np.concatenate([window_statistics(b["blendshapes"], b["mask"]) for b in batches])
    diffusion_steps = generator.noise_schedule().num_steps
    print(f"{trained.checkpoint}; {ns.windows} held-out windows, guidance {generator.guidance_scale:g}; "
          f"{platform.node()} {os.cpu_count()} cores (load {os.getloadavg()[0]:.1f}), threads "
          f"{torch.get_num_threads()}, {time.strftime('%Y-%m-%d')}", flush=True)
    rows: dict[str, dict] = {}
    reference_stats = None
    for name, steps, bf16 in specs:
        start = time.perf_counter()
        draws = [sample(generator, batches, name, steps, seed, bf16) for seed in (0, 1)]
        row, stats = score(draws, batches, judge, reference_stats, real)
        if reference_stats is None:  # DDIM-50: the floor over three draws
            third = np.concatenate([window_statistics(t, b["mask"]) for t, b in
                                    zip(sample(generator, batches, name, steps, 2), batches)])
            row["frechet_to_ddim50"] = max(row["frechet_to_ddim50"], frechet(third, stats[0]),
                                           frechet(third, stats[1]))
            reference_stats = stats[0]
        key = f"{name}:{steps}" + ("@bf16" if bf16 else "")
        row["network_calls"] = network_calls(name, steps, diffusion_steps)
        row["failed"] = passes(row, rows["ddim:50"], ns.tolerance) if rows else []
        rows[key] = row
        verdict = "ok" if not row["failed"] else "worse: " + ", ".join(row["failed"])
        print(f"{key:>12} calls {row['network_calls']:>3}  mouth {row['mouth_error']:.4f}  sync {row['sync']:.3f}  "
              f"upper {row['upper_face_dd']:.4f}  emotion {row['emotion_accuracy']:.3f}  "
              f"diversity {row['diversity']:.4f}  FD->DDIM-50 {row['frechet_to_ddim50']:.5f}  "
              f"FD->data {row['frechet_to_data']:.5f}  {verdict}"
              f"  [{time.perf_counter() - start:.0f} s]", flush=True)
    passing = [k for k, r in rows.items() if not r["failed"]]
    choice = min(passing, key=lambda k: (rows[k]["network_calls"], k))
    print(f"fewest network calls within {ns.tolerance:.0%} of DDIM-50 on every metric: {choice}")
    if ns.out:
        with open(ns.out, "w") as f:
            json.dump({"checkpoint": str(trained.checkpoint), "windows": ns.windows, "rows": rows,
                       "choice": choice, "date": time.strftime("%Y-%m-%d")}, f, indent=1)


if __name__ == "__main__":
    main()
