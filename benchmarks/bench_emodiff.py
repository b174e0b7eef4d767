"""EmoDiff speed: training windows/s, and sampling as seconds of audio per second of compute, per sampler and
step count (DDIM-50, the reference, in the same run; DDPM-500, the full chain), the median of --repeats runs.

  .venv/bin/python benchmarks/bench_emodiff.py [--device cuda] [--seconds 10] [--samplers ddim:50 dpmpp_2m:10]
      [--precision auto|fp32|bf16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import platform
import resource
import time

import hydra
import torch
from hydra import compose, initialize_config_dir

from experiments.train import CONFIG_DIR
from dtl_foundation.diffusion import SAMPLERS, network_calls
from lightning_modules.networks.emodiff_generator import SAMPLING_PRECISIONS, cpu_has_native_bf16

DEFAULT_SAMPLERS = ("ddim:50", "ddim:20", "dpmpp_2m:10", "dpmpp_2m:8", "dpmpp_2m:5")
"""NAME:STEPS measured at batch 1 and 16; DDIM-50 first, the reference the figures are read against;
DPM-Solver++(2M)-10 is the model's default (benchmarks/bench_sampler_quality.py chose it)."""
LABELS = {"ddim": "DDIM", "dpmpp_2m": "DPM++2M", "heun": "Heun", "ddpm": "DDPM"}


def build_model(device: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=emodiff_demo", "run_id=bench"])
    model = hydra.utils.instantiate(cfg.model).to(device)
    return model, cfg


def random_batch(b: int, frames: int, audio_dim: int, style_frames: int, device: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    batch = {"audio": torch.randn(b, frames, audio_dim, generator=g),
             "blendshapes": torch.rand(b, frames, 52, generator=g), "mask": torch.ones(b, frames, dtype=torch.bool),
             "style": torch.rand(b, style_frames, 52, generator=g),
             "style_mask": torch.ones(b, style_frames, dtype=torch.bool),
             "emotion": torch.randint(0, 8, (b,), generator=g), "level": torch.randint(1, 4, (b,), generator=g),
             "init": torch.rand(b, 52, generator=g)}
    return {k: v.to(device) for k, v in batch.items()}


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def sampler_spec(text: str) -> tuple[str, int]:
    name, _, steps = text.partition(":")
    if name not in SAMPLERS or not steps.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME:STEPS with NAME one of {', '.join(SAMPLERS)}")
    return name, int(steps)


def thread_speedup(device: str) -> float | None:
    """How much faster the configured threads run a fixed workload of the denoiser's matrix sizes than one
    thread does, now (CPU only): near the thread count when the cores are free, near 1 when the host (a VM's
    neighbours, other jobs) keeps all but one busy. Printed at the start and the end of a run, so that figures
    taken on a busy host can be told from the code's own speed."""
    if not device.startswith("cpu") or torch.get_num_threads() == 1:
        return None
    x, w, b = torch.randn(128, 128), torch.randn(512, 128), torch.randn(512)

    def seconds() -> float:
        start = time.perf_counter()
        for _ in range(400):
            torch.nn.functional.gelu(torch.nn.functional.linear(x, w, b))
        return time.perf_counter() - start

    threads = torch.get_num_threads()
    seconds()
    torch.set_num_threads(1)
    one = min(seconds() for _ in range(3))
    torch.set_num_threads(threads)
    return one / min(seconds() for _ in range(3))


def time_training(model, batch: dict[str, torch.Tensor], steps: int, device: str) -> float:
    """Training windows per second over `steps` optimiser steps, after 3 warm-up steps."""
    optimizer = torch.optim.AdamW(model.denoiser.parameters(), lr=1e-4)
    model.train()
    for step in range(steps + 3):
        if step == 3:
            sync(device)
            start = time.perf_counter()
        loss = model.diffusion_loss(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sync(device)
    return steps * batch["audio"].shape[0] / (time.perf_counter() - start)


def time_sampling(model, batch: dict[str, torch.Tensor], sampler: str, steps: int, repeats: int,
                  device: str) -> list[float]:
    """Wall seconds of `repeats` generate calls (guidance on, the model's scale), each from the same seed."""
    walls = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        with torch.inference_mode():
            model.generate(batch, steps=steps, sampler=sampler,
                           generator=torch.Generator(device=device).manual_seed(0))
        sync(device)
        walls.append(time.perf_counter() - start)
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length per sampled sequence")
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--samplers", nargs="*", type=sampler_spec, default=[sampler_spec(s) for s in DEFAULT_SAMPLERS],
                        help="NAME:STEPS items (default: %(default)s)")
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 16])
    parser.add_argument("--repeats", type=int, default=5, help="runs per figure; the median is reported")
    parser.add_argument("--ddpm-repeats", type=int, default=1, help="runs of the full DDPM chain (slow)")
    parser.add_argument("--precision", choices=SAMPLING_PRECISIONS, default="auto",
                        help="the generator's sampling_precision (default: %(default)s, as configs/model/emodiff.yaml)")
    parser.add_argument("--bf16", action="store_const", const="bf16", dest="precision",
                        help="the same as --precision bf16")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads (default: torch's, i.e. OMP_NUM_THREADS when set)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    model, cfg = build_model(device)
    model.generator.sampling_precision = args.precision
    params = sum(p.numel() for p in model.denoiser.parameters())
    load = os.getloadavg()[0]
    print(f"machine: {platform.machine()} {os.cpu_count()} cores (load {load:.1f}), device {device}"
          f"{' ' + torch.cuda.get_device_name() if device.startswith('cuda') else ''}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, sampling precision {args.precision}"
          f"{' (CPU with native bf16)' if cpu_has_native_bf16() else ''}; "
          f"denoiser {params / 1e6:.2f} M parameters")
    speedup = thread_speedup(device)
    if speedup is not None:
        print(f"{torch.get_num_threads()} threads vs 1 on a fixed matrix workload at the start: {speedup:.2f}x")
    audio_dim = cfg.model.denoiser.audio_dim
    window, style_frames, batch_size = cfg.data.window, cfg.data.style_frames, cfg.data.batch_size

    if args.train_steps > 0:
        train_rate = time_training(model, random_batch(batch_size, window, audio_dim, style_frames, device),
                                   args.train_steps, device)
        print(f"training: {train_rate:.0f} windows/s ({window} frames, batch {batch_size})")

    model.eval()
    frames = int(args.seconds * cfg.data.fps)
    diffusion_steps = model.generator.noise_schedule().num_steps
    time_sampling(model, random_batch(1, frames, audio_dim, style_frames, device), "ddim", 5, 1, device)  # warm-up
    runs = [(name, steps, b, args.repeats) for b in args.batches for name, steps in args.samplers]
    if args.ddpm_repeats > 0:
        runs.append(("ddpm", 0, 1, args.ddpm_repeats))
    reference: dict[int, float] = {}
    for name, steps, b, repeats in runs:
        batch = random_batch(b, frames, audio_dim, style_frames, device)
        walls = time_sampling(model, batch, name, steps, repeats, device)
        wall = statistics.median(walls)
        rate = args.seconds * b / wall
        if (name, steps) == ("ddim", 50):
            reference[b] = rate
        calls = network_calls(name, steps, diffusion_steps)
        label = f"{LABELS[name]}-{calls if name == 'ddpm' else steps}"
        versus = f", {rate / reference[b]:.1f}x DDIM-50" if b in reference and name != "ddpm" else ""
        print(f"sampling {label}, batch {b:>2}: {rate:8.1f}x real time ({args.seconds:g} s of audio each, "
              f"{wall:.3f} s wall, median of {repeats}, {min(walls):.3f}-{max(walls):.3f}; {calls} network calls "
              f"a window{versus})", flush=True)
    speedup = thread_speedup(device)
    if speedup is not None:
        print(f"{torch.get_num_threads()} threads vs 1 on a fixed matrix workload at the end: {speedup:.2f}x")
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"peak memory: {peak:.0f} MiB ({'CUDA allocated' if device.startswith('cuda') else 'process RSS'})")


if __name__ == "__main__":
    main()
