"""Renderer speed: face-vid2vid motion-transfer frames/s (default 256-px network and the tiny demo one) and the
end-to-end seconds of compute per second of 25-fps video (rig render + motion transfer + paste-back + encoding,
plus EmoDiff sampling when --emodiff-run is given)."""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from experiments.train import CONFIG_DIR
from rendering.default_rig import default_rig
from rendering.gl_renderer import FaceRenderer
from rendering.motion_transfer import MotionTransfer
from dtl_foundation.media.portrait import CropBox, paste_back
from dtl_foundation.media.video_write import write_video

FPS = 25.0


def network(config: str):
    import hydra

    overrides = ["experiment=renderer_demo"] if config == "demo" else ["model=renderer", "data=talking_video"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides + ["run_id=bench"])
    return hydra.utils.instantiate(cfg.model.model).eval()


def bench_transfer(model, frames: int, batch: int, device: str) -> dict:
    model = model.to(device)
    size = model.image_size
    source = torch.rand(3, size, size, device=device)
    driving = torch.rand(frames, 3, size, size, device=device)
    with torch.no_grad():
        list(MotionTransfer(model, source, batch_size=batch)(driving[:1]))  # warm-up
        start = time.perf_counter()
        transfer = MotionTransfer(model, source, batch_size=batch)
        out = list(transfer(driving))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"frames": sum(len(o) for o in out), "seconds": seconds, "fps": frames / seconds}


def bench_rig(frames: int) -> float:
    coeffs = np.clip(0.3 + 0.3 * np.sin(np.arange(frames)[:, None] / np.linspace(2, 12, 52)), 0, 1)
    with FaceRenderer(default_rig(), 256) as renderer:
        renderer.render(coeffs[:2])
        start = time.perf_counter()
        renderer.render(coeffs)
    return frames / (time.perf_counter() - start)


def bench_compose(frames: int) -> float:
    """Seconds per frame to paste a 256-px face into a 512-px portrait and encode it (H.264 + AAC)."""
    portrait = np.full((512, 512, 3), 120, np.uint8)
    face = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    box = CropBox(left=128, top=100, side=256)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_video(Path(tmp) / "v.mp4", (paste_back(portrait, face, box)[None] for _ in range(frames)), FPS)
    return (time.perf_counter() - start) / frames


def bench_emodiff(run: str, seconds_of_audio: float) -> float:
    """Seconds of EmoDiff sampling (DDIM-50 default steps) per second of audio, on espeak-ng speech."""
    import subprocess

    from experiments.generate.blendshapes import generate_blendshapes
    from lightning_modules.trained_model import load_trained_model

    trained = load_trained_model(run)
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        text = "This sentence is spoken so that the benchmark has real speech to animate. " * 3
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
        start = time.perf_counter()
        track = generate_blendshapes(trained, wav, "happy", 2)
    return (time.perf_counter() - start) / (len(track) / trained.fps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=4, help="driving frames for the default (256-px) network")
    parser.add_argument("--demo-frames", type=int, default=50, help="driving frames for the tiny demo network")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--emodiff-run", help="an EmoDiff run directory, to include its sampling time")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    results = {}
    for config, frames in (("default", args.frames), ("demo", args.demo_frames)):
        model = network(config)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        r = bench_transfer(model, frames, args.batch, args.device)
        results[config] = r
        print(f"face-vid2vid {config} ({model.image_size} px, {params:.1f} M params): {r['fps']:.2f} frames/s "
              f"({r['frames']} frames in {r['seconds']:.1f} s)")
    rig_fps = bench_rig(50)
    compose_s = bench_compose(50)
    print(f"rig render 256 px: {rig_fps:.1f} frames/s; paste-back + encode: {compose_s * 1000:.1f} ms/frame")
    emodiff = bench_emodiff(args.emodiff_run, 10) if args.emodiff_run else 0.0
    if args.emodiff_run:
        print(f"EmoDiff sampling: {emodiff:.2f} s per second of audio")
    for config, r in results.items():
        per_second = emodiff + FPS / rig_fps + FPS / r["fps"] + FPS * compose_s
        print(f"end to end with the {config} network: {per_second:.1f} s of compute per second of video "
              f"(SadTalker users report ~12 s per second on a 3070Ti)")


if __name__ == "__main__":
    main()
