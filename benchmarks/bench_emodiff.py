"""EmoDiff speed: training windows/s, and sampling as seconds of audio per second of compute (DDIM-50, DDPM)."""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import hydra
import torch
from hydra import compose, initialize_config_dir

from experiments.train import CONFIG_DIR


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length per sampled sequence")
    parser.add_argument("--train-steps", type=int, default=20)
    args = parser.parse_args()
    device = args.device
    model, cfg = build_model(device)
    params = sum(p.numel() for p in model.denoiser.parameters())
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, device {device}"
          f"{' ' + torch.cuda.get_device_name() if device.startswith('cuda') else ''}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}; denoiser {params / 1e6:.2f} M parameters")
    audio_dim = cfg.model.denoiser.audio_dim
    window, style_frames, batch_size = cfg.data.window, cfg.data.style_frames, cfg.data.batch_size

    optimizer = torch.optim.AdamW(model.denoiser.parameters(), lr=1e-4)
    batch = random_batch(batch_size, window, audio_dim, style_frames, device)
    model.train()
    for step in range(args.train_steps + 3):
        if step == 3:
            sync(device)
            start = time.perf_counter()
        loss = model.diffusion_loss(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sync(device)
    train_rate = args.train_steps * batch_size / (time.perf_counter() - start)
    print(f"training: {train_rate:.0f} windows/s ({window} frames, batch {batch_size})")

    model.eval()
    frames = int(args.seconds * cfg.data.fps)
    for name, steps, b in (("DDIM-50", 50, 1), ("DDIM-50", 50, 16), ("DDPM-500", 0, 1)):
        batch = random_batch(b, frames, audio_dim, style_frames, device)
        sync(device)
        start = time.perf_counter()
        model.generate(batch, steps=steps, generator=torch.Generator(device=device).manual_seed(0))
        sync(device)
        wall = time.perf_counter() - start
        print(f"sampling {name}, batch {b:>2}: {args.seconds * b / wall:8.1f}x real time "
              f"({args.seconds:g} s of audio each, {wall:.2f} s wall)")
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"peak memory: {peak:.0f} MiB ({'CUDA allocated' if device.startswith('cuda') else 'process RSS'})")


if __name__ == "__main__":
    main()
