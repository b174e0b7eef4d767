"""LSE-C / LSE-D of a 10-s talking video (250 frames, seeded random SyncNet): ours against syncnet_python's scorer.

Both score the same input in one run: the face crops as JPEG files plus a 16 kHz wav, which is what the reference's
lowest-level scorer, SyncNetInstance.evaluate, reads. Ours is timed from the same files (decoded with OpenCV as the
reference does) and from memory; the split shows the lip network against everything else.
Needs espeak-ng and the test-only dependency syncnet-python.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.io import wavfile
from syncnet_python.SyncNetInstance import SyncNetInstance
from syncnet_python.SyncNetModel import S as ReferenceSyncNet

from dtl_foundation.media.face_crop import crop_faces
from metrics.syncnet import (
    SyncNet,
    SyncNetScorer,
    lip_sync_score,
    num_sync_windows,
    offset_distances,
)
from dtl_foundation.media.video_read import read_video

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from talking_video import FACE_BOX, FPS, draw_frames, mouth_opening, speak, write_video

TEXT = ("the quick brown fox jumps over a lazy dog while seven happy people sing about rain in spring "
        "morning light across quiet rivers and distant hills where old friends meet again")
TOLERANCE = 1e-4


def make_video(work: Path, seconds: float) -> Path:
    """A `seconds`-long talking-face mp4 (espeak-ng speech repeated to length, mouth following its loudness)."""
    wav = speak(TEXT, work / "speech_once.wav")
    sample_rate, speech = wavfile.read(wav)
    wanted = int(round(seconds * sample_rate))
    speech = np.tile(speech, -(-wanted // len(speech)))[:wanted]
    wavfile.write(work / "speech.wav", sample_rate, speech)
    num_frames = int(round(seconds * FPS))
    frames = draw_frames(mouth_opening(speech, sample_rate, num_frames))
    return write_video(work / "talking.mp4", frames, audio=work / "speech.wav")


def random_reference_net(seed: int) -> ReferenceSyncNet:
    """The reference model with seeded weights and seeded batch-norm statistics (not the identity)."""
    torch.manual_seed(seed)
    net = ReferenceSyncNet()
    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            size = module.num_features
            module.running_mean.copy_(torch.rand(size, generator=generator) * 2 - 1)
            module.running_var.copy_(torch.rand(size, generator=generator) * 1.5 + 0.5)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.rand(size, generator=generator) - 0.5)
    return net.eval()


def write_reference_input(directory: Path, crops: torch.Tensor, audio: np.ndarray) -> None:
    """JPEG frames and audio.wav, the files SyncNetInstance.evaluate reads from opt.tmp_dir."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, crop in enumerate(crops.permute(0, 2, 3, 1).numpy()):
        cv2.imwrite(str(directory / f"{index:06d}.jpg"), np.ascontiguousarray(crop[..., ::-1]))
    wavfile.write(directory / "audio.wav", 16000, audio)


def read_reference_input(directory: Path) -> tuple[torch.Tensor, np.ndarray]:
    """The JPEG frames decoded by OpenCV (as the reference does) as RGB (T, 3, 224, 224) uint8, and the samples."""
    frames = np.stack([cv2.imread(str(path)) for path in sorted(directory.glob("*.jpg"))])
    _, audio = wavfile.read(directory / "audio.wav")
    return torch.from_numpy(np.ascontiguousarray(frames[..., ::-1])).permute(0, 3, 1, 2), audio


def run_reference(net: ReferenceSyncNet, directory: Path, batch_size: int) -> tuple[float, float, float, dict]:
    """Wall and CPU seconds of SyncNetInstance.evaluate, the seconds it reports for its network loop, its scores."""

    class Options:
        tmp_dir = str(directory)
        vshift = 15

    Options.batch_size = batch_size
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        wall, cpu, (offset, confidence, distance) = timed(
            lambda: SyncNetInstance(net, device="cpu").evaluate(Options()))
    networks = float(re.search(r"Compute time ([0-9.]+) sec", printed.getvalue()).group(1))
    return wall, cpu, networks, {"offset": offset, "lse_c": confidence, "lse_d": distance}


def timed(fn):
    """(wall seconds, process CPU seconds, result): CPU time is the steadier figure on a shared machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="video length (250 frames at 10 s)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each scorer, interleaved")
    parser.add_argument("--batch-size", type=int, default=32, help="our lip-tower batch (the reference uses 20)")
    parser.add_argument("--no-channels-last", action="store_true", help="run our lip tower in NCHW layout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is not installed")

    work = Path(tempfile.mkdtemp(prefix="bench_syncnet."))
    try:
        clip = read_video(make_video(work, args.seconds))
        crops = crop_faces(clip.frames, np.tile(FACE_BOX, (len(clip.frames), 1)))
        write_reference_input(work / "reference", crops, clip.audio)
        reference_net = random_reference_net(args.seed)
        ours_net = SyncNet()
        ours_net.load_state_dict(reference_net.state_dict())
        scorer = SyncNetScorer(ours_net, channel_order="rgb", batch_size=args.batch_size,
                               channels_last=not args.no_channels_last)
        num_windows = num_sync_windows(len(clip.frames), len(clip.audio))
        print(f"input: {len(clip.frames)} frames, {len(clip.audio) / 16000:.2f} s audio, {num_windows} windows; "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or 'cpu'}")

        runs: dict[str, list[float]] = {}

        def record(name: str, wall: float, cpu: float) -> None:
            runs.setdefault(name, []).append(wall)
            runs.setdefault(name + " (cpu)", []).append(cpu)

        for _ in range(args.repeats):
            wall, cpu, networks, reference = run_reference(reference_net, work / "reference", batch_size=20)
            record("reference", wall, cpu)
            runs.setdefault("reference networks loop", []).append(networks)
            io_wall, io_cpu, (frames, audio) = timed(lambda: read_reference_input(work / "reference"))
            record("reference file reading", io_wall, io_cpu)
            wall, cpu, ours = timed(lambda: scorer.score(frames, audio))
            record("ours from memory", wall, cpu)
            record("ours from files", io_wall + wall, io_cpu + cpu)
            wall, cpu, lip = timed(lambda: scorer.lip_embeddings(frames, num_windows))
            record("ours lip network", wall, cpu)
            wall, cpu, audio_embeddings = timed(lambda: scorer.audio_embeddings(audio, num_windows))
            record("ours MFCC + audio net", wall, cpu)
            wall, cpu, _ = timed(lambda: lip_sync_score(offset_distances(lip, audio_embeddings)))
            record("ours distances", wall, cpu)

        best = {k: min(v) for k, v in runs.items()}
        median = {k: statistics.median(v) for k, v in runs.items()}
        match = (ours.offset == reference["offset"] and abs(ours.lse_c - reference["lse_c"]) <= TOLERANCE
                 and abs(ours.lse_d - reference["lse_d"]) <= TOLERANCE)
        for name, scores in (("reference", reference), ("ours", vars(ours))):
            print(f"{name:10s} offset {scores['offset']}, LSE-C {scores['lse_c']:.6f}, LSE-D {scores['lse_d']:.6f}")
        print(f"numbers match (offset equal, LSE-C/LSE-D within {TOLERANCE:g}): {match} "
              f"(|dLSE-C| {abs(ours.lse_c - reference['lse_c']):.2e}, "
              f"|dLSE-D| {abs(ours.lse_d - reference['lse_d']):.2e})")
        print(f"seconds, best of {args.repeats} (median in brackets):")
        for key in runs:
            print(f"  {key:32s} {best[key]:8.2f}  ({median[key]:.2f})")
        print(f"reference split: network loop {best['reference networks loop']:.2f} s of {best['reference']:.2f} s "
              f"(the rest: JPEG/wav reading, MFCC, distance loop)")
        print(f"ours split: lip network {best['ours lip network']:.2f} s, rest {best['ours MFCC + audio net']:.2f} s "
              f"MFCC + audio network and {best['ours distances']:.3f} s distances")
        ratio_files = best["reference"] / best["ours from files"]
        ratio_compute = (best["reference"] - best["reference file reading"]) / best["ours from memory"]
        ratio_cpu = best["reference (cpu)"] / best["ours from files (cpu)"]
        print(f"speed-up, same files in: {ratio_files:.2f}x wall, {ratio_cpu:.2f}x CPU time; scoring alone "
              f"(reference minus its file reading vs ours from memory): {ratio_compute:.2f}x wall")
        if args.json:
            figures = {"runs": runs, "match": match, "ratio_files": ratio_files, "ratio_compute": ratio_compute,
                       "ratio_cpu": ratio_cpu, "batch_size": args.batch_size,
                       "channels_last": not args.no_channels_last}
            args.json.write_text(json.dumps(figures, indent=2))
        return 0 if match else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
