"""`dtl generate video`: portrait + speech + emotion -> MP4 (H.264 + AAC) of the portrait speaking it.

EmoDiff (-> lip refinement) gives ARKit blendshapes; the default rig renders them as an avatar video; the renderer
moves the portrait in relative mode: `warp` (the default, no training: rendering/warp/) warps the portrait's own
pixels, a face-vid2vid run transfers the avatar's motion to the face crop, which is pasted back. Beside each MP4 it
writes the avatar video and the ARKit Live Link Face CSV.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from datamodules.talking_video_datamodule import crop_video_frames
from dtl_foundation.arkit_live_link import LiveLinkTrack, write_live_link_csv
from dtl_foundation.media.audio import AudioError
from dtl_foundation.media.portrait import (
    CropBox,
    PortraitError,
    crop,
    crop_box_from_landmarks,
    find_face,
    load_portrait,
    paste_back,
)
from dtl_foundation.media.video_write import VideoError, write_video
from experiments.generate.blendshapes import (
    add_emotion_arguments,
    add_sampling_arguments,
    add_skip_existing_argument,
    emotion_takes,
    generate_blendshapes,
    metadata_path,
    request_metadata,
    take_name,
    write_metadata,
)
from experiments.generate.take_files import audio_inputs, input_stems, take_finished
from lightning_modules.renderer_finetune import TrainedRenderer, load_renderer
from lightning_modules.trained_model import TrainedModel, load_trained_model
from rendering.default_rig import default_rig
from rendering.frame_strip import STRIP_SUFFIX, FrameStrip
from rendering.gl_renderer import FaceRenderer
from rendering.motion_transfer import MotionTransfer
from rendering.warp.renderer import AVATAR_SIZE, WarpRenderer

MOTION_REFERENCES = ("neutral", "first-frame")


@dataclass
class Portrait:
    image: np.ndarray  # (H, W, 3) uint8, the whole portrait
    box: CropBox
    source: torch.Tensor  # (3, S, S) in [0, 1], the face crop at the renderer's size
    landmarks: np.ndarray  # (68, 2) dlib's landmarks of the face in the whole portrait


def load_video_renderer(spec: str | Path, device: str = "cpu") -> TrainedRenderer | WarpRenderer:
    """`warp` (the training-free renderer) or a face-vid2vid run directory or checkpoint."""
    return WarpRenderer(device=device) if str(spec) == WarpRenderer.name else load_renderer(spec, device)


def crop_size(renderer: TrainedRenderer | WarpRenderer) -> int:
    return renderer.avatar_size if isinstance(renderer, WarpRenderer) else renderer.model.image_size


def prepare_portrait(path: str | Path, size: int, face_index: int | None = None) -> Portrait:
    return portrait_from_image(load_portrait(path), size, source=path, face_index=face_index)


def portrait_from_image(image: np.ndarray, size: int, source: str | Path = "image",
                        face_index: int | None = None) -> Portrait:
    """An RGB uint8 image's face (the largest, or `face_index` by size), detected, cropped and resized;
    PortraitError naming `source` without a face."""
    face = find_face(image, source=source, face_index=face_index)
    box = crop_box_from_landmarks(face.landmarks)
    crop_pixels = crop(image, box, size)
    return Portrait(image=image, box=box, source=torch.from_numpy(crop_pixels).permute(2, 0, 1).float() / 255.0,
                    landmarks=face.landmarks)


def generate_video(trained: TrainedModel, renderer: TrainedRenderer | WarpRenderer, portrait: Portrait,
                   audio_path: Path,
                   emotion: str, level: int, out_dir: Path, *, refiner: TrainedModel | None = None,
                   style_path: Path | None = None, steps: int | None = None, guidance: float | None = None,
                   seed: int = 0, adapt_scale: bool = True, batch_size: int = 8, progress: bool = True,
                   stem: str | None = None, side_dir: Path | None = None, motion_reference: str = "neutral",
                   **emotion_request) -> dict:
    """Write <stem>.mp4 under out_dir and <stem>{_avatar.mp4,_arkit.csv,_strip.png} (the strip: 6 frames,
    face-cropped) under side_dir (default: out_dir), the stem defaulting to <audio stem>_<emotion>_level_<L>; returns
    their paths and timings. `motion_reference`: what the portrait is taken to show, the rig's `neutral` face (an
    emotion held throughout reaches the portrait) or the track's `first-frame` (face-vid2vid's relative mode, which
    cancels it). `emotion_request`: the style_from, intensity, schedule_path and sampler options of
    generate_blendshapes."""
    if motion_reference not in MOTION_REFERENCES:
        raise ValueError(f"motion_reference must be one of {', '.join(MOTION_REFERENCES)}, not {motion_reference!r}")
    timings = {}
    start = time.perf_counter()
    track = generate_blendshapes(trained, audio_path, emotion, level, style_path=style_path, steps=steps,
                                 guidance=guidance, seed=seed, refiner=refiner, **emotion_request)
    timings["blendshapes_s"] = time.perf_counter() - start
    fps = trained.fps
    stem = stem or f"{audio_path.stem}_{emotion}_level_{level}"
    side_dir = side_dir or out_dir
    paths = {"video": out_dir / f"{stem}.mp4", "avatar": side_dir / f"{stem}_avatar.mp4",
             "arkit": side_dir / f"{stem}_arkit.csv", "strip": side_dir / f"{stem}{STRIP_SUFFIX}"}
    write_live_link_csv(paths["arkit"], LiveLinkTrack(blendshapes=track, fps=fps))

    timings.update(render_take(renderer, portrait, track, fps, paths, audio_path, batch_size=batch_size,
                               progress=progress, motion_reference=motion_reference, adapt_scale=adapt_scale))
    timings["audio_s"] = len(track) / fps
    return {"paths": paths, "frames": len(track), "fps": fps, "timings": timings}


def render_take(renderer: TrainedRenderer | WarpRenderer, portrait: Portrait, track: np.ndarray, fps: float,
                paths: dict[str, Path], audio_path: Path | None = None, *, batch_size: int = 8, progress: bool = True,
                motion_reference: str = "neutral", adapt_scale: bool = True) -> dict[str, float]:
    """The videos of one blendshape track: the rig's avatar MP4 (paths["avatar"]), the portrait moved by
    `renderer` (paths["video"]) and its frame strip (paths["strip"]); returns the seconds each part took.
    The avatar MP4 is encoded on a second thread while the portrait is moved (its ffmpeg runs beside the warp)."""
    timings = {}
    start = time.perf_counter()
    if isinstance(renderer, WarpRenderer):  # its own rig renderer, already made for a previous take
        avatar = renderer.render_avatar(track)
    else:
        with FaceRenderer(default_rig(), AVATAR_SIZE) as avatar_renderer:
            avatar = avatar_renderer.render(track).numpy()
            neutral = avatar_renderer.render(np.zeros_like(track[:1])).numpy()
    timings["avatar_s"] = time.perf_counter() - start

    start = time.perf_counter()
    name = audio_path.name if audio_path is not None else paths["video"].name
    bar = tqdm(total=len(track), desc=f"motion transfer {name}", unit="frame", disable=not progress)
    if isinstance(renderer, WarpRenderer):
        def frames():
            reference = None if motion_reference == "neutral" else track[0]
            for chunk in renderer.animate(portrait.image, portrait.landmarks, track, avatar, batch_size=batch_size,
                                          reference=reference):
                bar.update(len(chunk))
                yield chunk
    else:
        size = renderer.model.image_size
        crops = crop_video_frames(np.concatenate([neutral, avatar]), size, renderer.crop, paths["avatar"])
        driving = torch.from_numpy(crops[1:]).permute(0, 3, 1, 2).float().div(255.0)
        reference = driving.new_tensor(crops[0]).permute(2, 0, 1).div(255.0) if motion_reference == "neutral" else None
        transfer = MotionTransfer(renderer.model, portrait.source, adapt_scale=adapt_scale, batch_size=batch_size,
                                  reference=reference)
        device = next(renderer.model.parameters()).device

        def frames():
            for chunk in transfer(driving.to(device)):
                faces = (chunk.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
                bar.update(len(faces))
                yield np.stack([paste_back(portrait.image, face, portrait.box) for face in faces])

    strip = FrameStrip(len(track), portrait.box)
    with ThreadPoolExecutor(max_workers=1) as encoder:
        avatar_written = encoder.submit(write_video, paths["avatar"], avatar, fps, audio_path)
        try:
            write_video(paths["video"], strip.collect(frames()), fps, audio_path)
        finally:
            bar.close()
        avatar_written.result()
    strip.save(paths["strip"])
    timings["transfer_s"] = time.perf_counter() - start
    return timings


def cmd_video(ns: argparse.Namespace) -> int:
    try:
        trained = load_trained_model(ns.checkpoint, ns.device)
        refiner = load_trained_model(ns.refiner, ns.device) if ns.refiner else None
        renderer = load_video_renderer(ns.renderer, ns.device)
        portrait = prepare_portrait(ns.portrait, crop_size(renderer), ns.face_index)
    except (FileNotFoundError, ValueError) as e:  # PortraitError is a ValueError
        print(f"dtl generate video: {e}", file=sys.stderr)
        return 2
    files = audio_inputs(ns)
    out_dir = Path(ns.out)
    try:
        stems = input_stems(files)
        takes = emotion_takes(ns)
    except ValueError as e:
        print(f"dtl generate video: {e}", file=sys.stderr)
        return 2
    failures = 0
    jobs = [(audio_path, stem, take) for audio_path, stem in zip(files, stems) for take in takes]
    for audio_path, stem, take in tqdm(jobs, desc="generating", unit="take", disable=len(jobs) < 2):
        stem = f"{stem}_{take_name(take)}"
        request = request_metadata(trained, take, audio_path) | {"renderer": str(take.renderer),
                                                                 "motion_reference": take.motion_reference}
        try:
            if take.skip_existing and take_finished(metadata_path(out_dir / f"{stem}_arkit.csv"), request):
                print(f"{audio_path}: {out_dir / stem}.mp4 is already there (--skip-existing)")
                continue
            result = generate_video(trained, renderer, portrait, audio_path, take.emotion, take.level, out_dir,
                                    refiner=refiner, style_path=Path(take.style) if take.style else None,
                                    steps=take.steps, guidance=take.guidance, seed=take.seed,
                                    adapt_scale=not take.no_adapt_scale, batch_size=take.batch_size,
                                    stem=stem, style_from=take.style_from, sampler=take.sampler,
                                    intensity=take.intensity, motion_reference=take.motion_reference,
                                    schedule_path=Path(take.emotion_schedule) if take.emotion_schedule else None)
            write_metadata(result["paths"]["arkit"], request)
        except (AudioError, VideoError, PortraitError, ValueError, FileNotFoundError) as e:  # this file: report, go on
            print(f"dtl generate video: {e}", file=sys.stderr)
            failures += 1
            continue
        t = result["timings"]
        compute = t["blendshapes_s"] + t["avatar_s"] + t["transfer_s"]
        print(f"{audio_path} -> {result['paths']['video']} ({result['frames']} frames at {result['fps']:g} fps; "
              f"{compute / max(t['audio_s'], 1e-9):.1f} s of compute per second of video)")
    return 1 if failures else 0


def add_parser(sub) -> None:
    video = sub.add_parser("video", help="portrait + speech + emotion -> talking-head MP4 (+ avatar MP4, ARKit CSV)")
    video.add_argument("--portrait", required=True, help="a portrait image (png, jpg; grey or RGBA too) with a "
                       "frontal face")
    video.add_argument("--audio", nargs="*", default=[], help="speech files (wav, flac, m4a, mp3)")
    video.add_argument("--audio-list", help="a text file with one audio path a line")
    video.add_argument("--audio-dir", help="a folder of audio files")
    add_emotion_arguments(video)
    video.add_argument("--checkpoint", required=True, help="an EmoDiff run directory or checkpoint")
    video.add_argument("--refiner", help="a lip-refinement run directory or checkpoint")
    video.add_argument("--renderer", default=WarpRenderer.name,
                       help="`warp` (default: the training-free warp renderer) or a face-vid2vid run directory or "
                            "checkpoint")
    video.add_argument("--motion-reference", choices=MOTION_REFERENCES, default="neutral",
                       help="what the portrait is taken to show: the rig's neutral face (default: the emotion shows "
                            "from the first frame on) or the track's first frame (face-vid2vid's relative mode)")
    video.add_argument("--face-index", type=int, default=None,
                       help="which face of a portrait with several: 0 = the largest (default), 1 the next, ...")
    add_sampling_arguments(video)
    video.add_argument("--no-adapt-scale", action="store_true", help="no hull-area rescaling of the avatar's motion")
    video.add_argument("--batch-size", type=int, default=8, help="frames per motion-transfer batch")
    video.add_argument("--device", default="cpu")
    video.add_argument("--out", default="generated")
    add_skip_existing_argument(video)
    video.set_defaults(func=cmd_video, needs_audio=True)
