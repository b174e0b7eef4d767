"""Warp renderer speed after EmoDiff: frames/s of the avatar render (the mouth interior's source), the warp with
paste-back, both together, and both with H.264 encoding (`write_video`, what `dtl generate video` does), on
skimage's astronaut scaled so the face box is --face-size pixels, for a 10-s speech-like track with blinks."""

from __future__ import annotations

import argparse
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
from rendering.warp.renderer import WarpRenderer

FPS = 25.0


def speech_like_track(frames: int) -> np.ndarray:
    t = np.arange(frames) / FPS
    coeffs = np.zeros((frames, NUM_BLENDSHAPES), np.float32)
    coeffs[:, INDEX["jawOpen"]] = np.clip(0.35 + 0.35 * np.sin(2 * np.pi * 3.1 * t) * np.sin(0.9 * t), 0, 1)
    coeffs[:, INDEX["mouthSmileLeft"]] = coeffs[:, INDEX["mouthSmileRight"]] = 0.3 + 0.2 * np.sin(0.4 * t)
    coeffs[:, INDEX["mouthPucker"]] = np.clip(np.sin(1.7 * t), 0, 1) * 0.4
    blink = np.clip(1 - np.abs(t[:, None] - np.arange(1.5, t[-1], 3.3)).min(1) / 0.12, 0, 1)
    coeffs[:, INDEX["eyeBlinkLeft"]] = coeffs[:, INDEX["eyeBlinkRight"]] = blink
    return coeffs


def portrait_with_face(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The astronaut resized so that its face box side is about `size` pixels, and the face's landmarks."""
    import skimage.data

    image = skimage.data.astronaut()
    side = crop_box_from_landmarks(find_face(image, source="astronaut").landmarks).side
    scale = size / side
    image = np.asarray(Image.fromarray(image).resize((round(512 * scale),) * 2, Image.Resampling.BICUBIC))
    return image, find_face(image, source="astronaut").landmarks


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--face-size", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}")
    coeffs = speech_like_track(int(args.seconds * FPS))
    frames = len(coeffs)
    with WarpRenderer(device=args.device) as renderer:
        renderer.render_avatar(coeffs[:2])  # warm-up: rig, calibration, GL context
        avatar_s = timed(lambda: renderer.render_avatar(coeffs))
        avatar = renderer.render_avatar(coeffs)
        for size in args.face_size:
            image, landmarks = portrait_with_face(size)
            list(renderer.animate(image, landmarks, coeffs[:4], avatar[:4], batch_size=args.batch))  # warm-up
            warp_s = timed(lambda: [None for _ in renderer.animate(image, landmarks, coeffs, avatar,
                                                                   batch_size=args.batch)])
            both_s = timed(lambda: [None for _ in renderer.animate(image, landmarks, coeffs, None,
                                                                   batch_size=args.batch)])
            with tempfile.TemporaryDirectory() as tmp:
                encoded_s = timed(lambda: write_video(Path(tmp) / "warp.mp4", renderer.animate(
                    image, landmarks, coeffs, None, batch_size=args.batch), FPS))
            print(f"face {size} px (portrait {image.shape[1]}x{image.shape[0]}), {frames} frames: "
                  f"avatar render {frames / avatar_s:.1f} frames/s, warp + paste-back {frames / warp_s:.1f} "
                  f"frames/s, avatar + warp {frames / both_s:.1f} frames/s, "
                  f"end to end with H.264 encoding {frames / encoded_s:.1f} frames/s "
                  f"({'real time' if frames / encoded_s >= FPS else 'slower than real time'} at {FPS:g} fps)")


if __name__ == "__main__":
    main()
