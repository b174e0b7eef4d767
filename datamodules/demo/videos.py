"""Front-view videos of the demo corpus: every clip's ARKit track rendered on its speaker's face, with its speech."""

from __future__ import annotations

import logging
import os
import time
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from datamodules.corpus import scan_corpus
from datamodules.tracks import load_track
from dtl_foundation.atomic_files import atomic_save_npy
from dtl_foundation.mead import ClipKey
from rendering.default_rig import default_rig
from rendering.gl_renderer import FaceRenderer, create_context
from rendering.speaker_faces import speaker_face_params
from dtl_foundation.media.video_write import VideoError, check_video, write_video

log = logging.getLogger(__name__)


def head_motion(frames: int, fps: float, rng: np.random.Generator, degrees: float = 3.0) -> np.ndarray:
    """(frames, 6) slow, smooth head sway: a few sines per angle below 0.6 Hz, `degrees` at most; no translation."""
    t = np.arange(frames) / fps
    poses = np.zeros((frames, 6))
    for axis, scale in enumerate((1.0, 0.7, 0.5)):
        freqs = rng.uniform(0.08, 0.6, 3)
        phases = rng.uniform(0, 2 * np.pi, 3)
        weights = rng.dirichlet(np.ones(3))
        waves = np.sin(2 * np.pi * freqs[None] * t[:, None] + phases)
        poses[:, axis] = degrees * scale * (weights[None] * waves).sum(1)
    return poses


def clip_head_motion(clip_id: str, frames: int, fps: float, seed: int = 0, degrees: float = 3.0) -> np.ndarray:
    """The head sway of one demo clip: seeded by (seed, clip id)."""
    return head_motion(frames, fps, np.random.default_rng([seed, zlib.crc32(clip_id.encode())]), degrees)


def render_demo_videos(corpus_root: str | os.PathLike, *, size: int = 256, view: str = "front", seed: int = 0,
                       supersample: int = 2, head_motion_degrees: float = 3.0, overwrite: bool = False,
                       limit: int | None = None, clip_ids: Iterable[str] | None = None, progress: bool = True,
                       cache_dir: str | os.PathLike | None = None, crf: int = 20) -> dict:
    """Render every clip's blendshape track to <ID>/video/<view>/<emotion>/level_<k>/<NNN>.mp4 with its audio.

    The head poses rendered are the clip's ground truth: <ID>/head_pose/<emotion>/level_<k>/<NNN>.npy (T, 6), the
    layout and convention `dtl data extract` writes its estimates in.

    Resumable: a video that already exists and checks out (H.264 + AAC, as long as its audio within a frame)
    is skipped unless `overwrite`. Each speaker has its own face (`speaker_face_params`); each clip a gentle
    head sway seeded by its id (0 degrees turns it off). `clip_ids` renders only those clips, `limit` only the
    first `limit` (in clip id order).
    Returns counts, the seconds spent and the clips that failed (with their error).
    """
    root = Path(corpus_root)
    manifest = scan_corpus(root, val_speakers=0, test_speakers=0, on_error="skip", progress=False)
    records = sorted(manifest.records, key=lambda r: r.clip_id)
    if clip_ids is not None:
        wanted = set(clip_ids)
        unknown = wanted - {r.clip_id for r in records}
        if unknown:
            raise ValueError(f"{root}: no valid clips {sorted(unknown)} in the corpus")
        records = [r for r in records if r.clip_id in wanted]
    if limit is not None:
        records = records[:limit]
    by_speaker: dict[str, list] = defaultdict(list)
    for record in records:
        by_speaker[record.speaker].append(record)
    report = {"clips": len(records), "rendered": 0, "skipped_valid": 0, "failed": [],
              "unreadable_in_corpus": manifest.skipped, "frames": 0, "seconds": 0.0}
    start = time.perf_counter()
    context = create_context()
    bar = tqdm(total=len(records), desc="demo videos", unit="clip", disable=not progress)
    try:
        for speaker, clips in by_speaker.items():
            renderer = None
            for record in clips:
                key = ClipKey(record.speaker, record.emotion, record.level, record.sentence)
                out, pose_file = key.video_path(root, view), key.head_pose_path(root)
                if out.exists() and not overwrite and check_video(out, record.audio_path, record.fps) is None:
                    if not pose_file.exists():  # rendered before the poses were written beside the videos
                        track, fps = load_track(record.track_path, npy_fps=record.fps, npy_order=manifest.arkit_order)
                        atomic_save_npy(pose_file, clip_head_motion(record.clip_id, len(track), fps, seed,
                                                                    head_motion_degrees))
                    report["skipped_valid"] += 1
                    bar.update()
                    continue
                if renderer is None:
                    rig = default_rig(speaker_face_params(speaker, seed), cache_dir=cache_dir)
                    renderer = FaceRenderer(rig, size, supersample=supersample, context=context)
                try:
                    track, fps = load_track(record.track_path, npy_fps=record.fps, npy_order=manifest.arkit_order)
                    poses = clip_head_motion(record.clip_id, len(track), fps, seed, head_motion_degrees)
                    write_video(out, renderer.iter_render(track, poses), fps, record.audio_path, crf=crf)
                    atomic_save_npy(pose_file, poses.astype(np.float32))
                    report["rendered"] += 1
                    report["frames"] += len(track)
                except (VideoError, ValueError) as e:
                    report["failed"].append({"clip_id": record.clip_id, "error": str(e)})
                    log.error("%s", e)
                bar.update()
            if renderer is not None:
                renderer.release()
    finally:
        bar.close()
        context.release()
    report["seconds"] = time.perf_counter() - start
    return report
