"""Warp renderer speed after EmoDiff: frames/s of the avatar render (the mouth interior's source), the warp with
paste-back, and end to end as `dtl generate video` goes on once EmoDiff has given the track (avatar frames and
their H.264 MP4, the warp and the portrait's MP4), on
skimage's astronaut scaled so the face box is --face-size pixels, for a 10-s speech-like track with blinks. Each
figure is given by wall clock and by CPU time (what an unshared machine would take, one core per thread)."""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dtl_foundation.arkit import INDEX, NUM_BLENDSHAPES
from dtl_foundation.media.portrait import crop_box_from_landmarks, find_face
from dtl_foundation.media.video_write import write_video
from experiments.generate.video import Portrait, render_take
from rendering.warp.renderer import WarpRenderer

FPS = 25.0


def speech_like_track(frames: int) -> np.ndarray:
    t = np.arange(frames) / FPS
    coeffs = np.zeros((frames, NUM_BLENDSHAPES), np.float32)
    coeffs[:, INDEX["jawOpen"]] = np.clip(0.35 + 0.35 * np.sin(2 * np.pi * 3.1 * t) * np.sin(0.9 * t), 0, 1)
    coeffs[:, INDEX["mouthSmileLeft"]] = coeffs[:, INDEX["mouthSmileRight"]] = 0.3 + 0.2 * np.sin(0.4 * t)
    coeffs[:, INDEX["mouthPucker"]] = np.clip(np.sin(1.7 * t), 0, 1) * 0.4
    blinks = np.arange(1.5, max(t[-1], 1.5) + 1e-9, 3.3)  # a blink every 3.3 s from 1.5 s, at least one
    blink = np.clip(1 - np.abs(t[:, None] - blinks).min(1) / 0.12, 0, 1)
    coeffs[:, INDEX["eyeBlinkLeft"]] = coeffs[:, INDEX["eyeBlinkRight"]] = blink
    return coeffs


def astronaut_landmarks(path: Path | None) -> np.ndarray:
    """dlib's 68 landmarks of skimage's astronaut (512 px): read from `path` when given (a machine without dlib's
    shape model), else detected."""
    import skimage.data

    if path is not None:
        return np.load(path)
    return find_face(skimage.data.astronaut(), source="astronaut").landmarks


def portrait_with_face(size: int, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut resized so that its face box side is about `size` pixels, and the face's landmarks scaled
    with it."""
    import skimage.data

    image = skimage.data.astronaut()
    scale = size / crop_box_from_landmarks(landmarks).side
    side = round(image.shape[0] * scale)
    image = np.asarray(Image.fromarray(image).resize((side, side), Image.Resampling.BICUBIC))
    return image, (landmarks + 0.5) * (side / 512) - 0.5


def timed(function) -> tuple[float, float]:
    """Wall-clock seconds and CPU seconds (this process's threads and its finished children: ffmpeg) of a call.
    On a machine shared with other jobs the wall clock counts their time too; the CPU time does not."""
    start, cpu = time.perf_counter(), os.times()
    function()
    end = os.times()
    used = (end.user + end.system + end.children_user + end.children_system
            - cpu.user - cpu.system - cpu.children_user - cpu.children_system)
    return time.perf_counter() - start, used


def rates(frames: int, seconds: tuple[float, float]) -> str:
    return f"{frames / seconds[0]:.1f} ({frames / seconds[1]:.1f} by CPU time)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--face-size", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--portrait-landmarks", type=Path,
                        help="the astronaut's 68 landmarks as .npy, instead of dlib (benchmarks/gpu_checks.sh)")
    parser.add_argument("--save-portrait-landmarks", type=Path, help="detect them, write this .npy and exit")
    args = parser.parse_args()
    if args.save_portrait_landmarks:
        np.save(args.save_portrait_landmarks, astronaut_landmarks(None))
        return
    torch.set_num_threads(args.threads)
    astronaut = astronaut_landmarks(args.portrait_landmarks)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    coeffs = speech_like_track(int(args.seconds * FPS))
    frames = len(coeffs)
    with WarpRenderer(device=args.device) as renderer:
        renderer.render_avatar(coeffs[:2])  # warm-up: rig, calibration, GL context
        avatar_s = timed(lambda: renderer.render_avatar(coeffs))
        avatar = renderer.render_avatar(coeffs)
        for size in args.face_size:
            image, landmarks = portrait_with_face(size, astronaut)
            list(renderer.animate(image, landmarks, coeffs[:4], avatar[:4], batch_size=args.batch))  # warm-up
            warp_s = timed(lambda: [None for _ in renderer.animate(image, landmarks, coeffs, avatar,
                                                                   batch_size=args.batch)])

            portrait = Portrait(image=image, box=crop_box_from_landmarks(landmarks), landmarks=landmarks,
                                source=torch.empty(0))

            def sequential(folder: Path) -> None:
                """The reference: avatar render, its MP4, then the warp and the portrait's MP4, one after another."""
                avatar_frames = renderer.render_avatar(coeffs)
                write_video(folder / "avatar.mp4", avatar_frames, FPS)
                write_video(folder / "warp.mp4", renderer.animate(image, landmarks, coeffs, avatar_frames,
                                                                  batch_size=args.batch), FPS)

            def generate_video_after_emodiff(folder: Path) -> None:
                """What `dtl generate video` does once EmoDiff has given the track (experiments/generate/video.py)."""
                paths = {"video": folder / "warp.mp4", "avatar": folder / "avatar.mp4", "strip": folder / "strip.png"}
                render_take(renderer, portrait, coeffs, FPS, paths, batch_size=args.batch, progress=False)

            with tempfile.TemporaryDirectory() as tmp:
                sequential_s = timed(lambda: sequential(Path(tmp)))
                end_to_end_s = timed(lambda: generate_video_after_emodiff(Path(tmp)))
            print(f"face {size} px (portrait {image.shape[1]}x{image.shape[0]}), {frames} frames, frames/s by "
                  f"wall clock: avatar render {rates(frames, avatar_s)}, warp + paste-back {rates(frames, warp_s)}, "
                  f"end to end after EmoDiff as dtl generate video (avatar render, warp, both MP4s) "
                  f"{rates(frames, end_to_end_s)}, the same one step after another {rates(frames, sequential_s)} "
                  f"(real time: {FPS:g})")


if __name__ == "__main__":
    main()
