"""Face rig rendering speed: frames/s at 256 and 512 px (EGL: llvmpipe on CPU, or a GPU), and demo-video throughput."""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rendering.default_rig import default_rig
from rendering.gl_renderer import FaceRenderer, create_context


def _track(frames: int, seed: int = 0) -> np.ndarray:
    """Smooth random blendshape activity, like a speech track's."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None]
    return np.clip(0.3 + 0.3 * np.sin(t / rng.uniform(2, 12, 52) + rng.uniform(0, 6, 52)), 0, 1).astype(np.float32)


AA_MODES = {"none": {"supersample": 1}, "ssaa2": {"supersample": 2}, "msaa4": {"supersample": 1, "samples": 4}}


def bench_frames(rig, size: int, aa: str, frames: int) -> dict:
    coeffs = _track(frames)
    poses = np.zeros((frames, 6))
    poses[:, 0] = 5 * np.sin(np.arange(frames) / 20)
    with FaceRenderer(rig, size, **AA_MODES[aa]) as renderer:
        renderer.render(coeffs[:4], poses[:4])  # warm-up: shaders, blended-normal tables
        start = time.perf_counter()
        renderer._geometry(torch.from_numpy(coeffs))
        geometry_s = time.perf_counter() - start
        start, cpu = time.perf_counter(), time.process_time()
        renderer.render(coeffs, poses)
        total_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    return {"fps": frames / total_s, "ms_geometry": 1000 * geometry_s / frames, "ms_total": 1000 * total_s / frames,
            "cpu_ms": 1000 * cpu_s / frames}


def bench_demo(clips: int, size: int, aa: str, corpus: Path | None) -> None:
    from datamodules.demo.build import build_demo_corpus
    from datamodules.demo.videos import render_demo_videos

    with tempfile.TemporaryDirectory() as tmp:
        root = corpus or build_demo_corpus(Path(tmp) / "demo", progress=False)
        from datamodules.corpus import scan_corpus

        manifest = scan_corpus(root, val_speakers=0, test_speakers=0, on_error="skip", progress=False)
        all_clips = sorted(manifest.records, key=lambda r: r.clip_id)
        step = max(len(all_clips) // clips, 1)
        chosen = [r.clip_id for r in all_clips[::step][:clips]]  # spread over speakers and emotions
        start, cpu = time.perf_counter(), time.process_time()
        report = render_demo_videos(root, size=size, supersample=AA_MODES[aa]["supersample"], clip_ids=chosen,
                                    overwrite=True, progress=False, cache_dir=Path(tmp) / "rigs")
        seconds, cpu_s = time.perf_counter() - start, time.process_time() - cpu
        total_frames = sum(r.frames for r in all_clips)
        per_frame = seconds / max(report["frames"], 1)
        print(f"demo videos {size}px {aa}: {report['rendered']} clips, {report['frames']} frames in "
              f"{seconds:.1f} s wall, {cpu_s:.1f} s CPU in this process, ffmpeg not counted "
              f"({report['frames'] / seconds:.1f} frames/s, rig builds for "
              f"{len({c.split('_')[0] for c in chosen})} speakers included); all {len(all_clips)} clips "
              f"({total_frames} frames) extrapolate to {per_frame * total_frames / 60:.1f} min")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--aa", nargs="+", default=list(AA_MODES), choices=list(AA_MODES),
                        help="anti-aliasing: none, 2x2 supersampling (the default of FaceRenderer), 4x MSAA")
    parser.add_argument("--demo-clips", type=int, default=0, help="also time render_demo_videos on this many clips")
    parser.add_argument("--demo-corpus", type=Path, default=None, help="an existing demo corpus (default: build one)")
    parser.add_argument("--demo-aa", default="ssaa2", choices=["none", "ssaa2"],
                        help="anti-aliasing of the demo videos")
    args = parser.parse_args()
    context = create_context()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads); "
          f"GL: {context.info['GL_RENDERER']}, {context.info['GL_VERSION']}")
    context.release()
    with tempfile.TemporaryDirectory() as tmp:
        rig = default_rig(cache_dir=tmp)
    print(f"default rig: {rig.num_vertices} vertices, {len(rig.triangles)} triangles, 52 shapes")
    for size in args.sizes:
        for aa in args.aa:
            r = bench_frames(rig, size, aa, args.frames)
            print(f"{size}px AA {aa}: {r['fps']:.1f} frames/s ({r['fps'] / 25:.2f}x real time at 25 fps); "
                  f"{r['ms_total']:.1f} ms/frame wall, {r['cpu_ms']:.1f} ms/frame CPU (all threads), "
                  f"{r['ms_geometry']:.2f} ms of it posing the mesh (torch)")
    if args.demo_clips:
        bench_demo(args.demo_clips, args.sizes[0], args.demo_aa, args.demo_corpus)


if __name__ == "__main__":
    main()
