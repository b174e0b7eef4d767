"""Frames per second of `dtl data extract --backend fit` on demo videos: decoding + dlib tracking, and the fit.

Usage: python benchmarks/bench_extract.py CORPUS [--clips 6] [--device cpu] [--prior PRIOR.npz]
CORPUS is a demo corpus with videos (`dtl data demo --video`); the first N clips are timed, one process.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


def main() -> None:
    from datamodules.extraction.books import find_videos
    from datamodules.extraction.face_track import FaceTracker, to_camera_pixels
    from datamodules.extraction.landmark_fit import fit_landmarks
    from dtl_foundation.media.video_read import read_frames
    from rendering.rig_landmarks import default_calibration

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("corpus")
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prior", help="an expression prior (`dtl data prior`): the fit with its MAP term")
    ns = parser.parse_args()
    prior = None
    if ns.prior:
        from datamodules.extraction.expression_prior import ExpressionPrior

        prior = ExpressionPrior.load(ns.prior)
    torch.set_num_threads(ns.threads)
    calibration = default_calibration()
    tracker = FaceTracker()
    clips = find_videos(Path(ns.corpus), "front")[0][: ns.clips]
    frames = decode_s = track_s = fit_s = 0.0
    for clip in clips:
        start = time.perf_counter()
        video = read_frames(clip.video, 25)
        decoded = time.perf_counter()
        tracked = tracker.track(video)
        landmarks = to_camera_pixels(tracked.landmarks, tracked.size, calibration.size)
        tracked_at = time.perf_counter()
        fit_landmarks(landmarks, calibration, device=ns.device, prior=prior)
        if ns.device.startswith("cuda"):
            torch.cuda.synchronize()
        done = time.perf_counter()
        frames += len(video)
        decode_s += decoded - start
        track_s += tracked_at - decoded
        fit_s += done - tracked_at
    total = decode_s + track_s + fit_s
    print(f"{len(clips)} clips, {int(frames)} frames ({video.shape[1]}x{video.shape[2]}), fit on {ns.device}, "
          f"{ns.threads} torch thread(s), {'with the prior ' + ns.prior if prior else 'no prior'}")
    print(f"decode {frames / decode_s:.1f} frames/s, dlib tracking {frames / track_s:.1f} frames/s, "
          f"fit {frames / fit_s:.1f} frames/s; end to end {frames / total:.1f} frames/s")


if __name__ == "__main__":
    main()
