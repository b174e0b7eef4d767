"""A synthetic talking-face mp4: espeak-ng speech and a drawn face whose mouth opens with the speech loudness."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from scipy.io import wavfile

FPS = 25
FRAME_SIZE = 256
FACE_BOX = (72, 40, 184, 200)  # (left, top, right, bottom) of the drawn face in every frame


def speak(text: str, path: Path, words_per_minute: int = 150) -> Path:
    """espeak-ng's rendering of `text` as a wav file (22.05 kHz int16)."""
    subprocess.run(["espeak-ng", "-s", str(words_per_minute), "-w", str(path), text], check=True, capture_output=True)
    return path


def mouth_opening(speech: np.ndarray, sample_rate: int, num_frames: int) -> np.ndarray:
    """(num_frames,) RMS loudness per 1/25 s, scaled to [0, 1]."""
    per_frame = sample_rate // FPS
    chunks = speech[: num_frames * per_frame].astype(np.float64).reshape(num_frames, per_frame)
    rms = np.sqrt(np.mean(chunks**2, axis=1))
    return rms / max(rms.max(), 1e-9)


def draw_frames(opening: np.ndarray, seed: int = 0) -> np.ndarray:
    """(T, 256, 256, 3) uint8 RGB: gradient background, skin-coloured oval, eyes, a mouth `opening[t]` wide open."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:FRAME_SIZE, 0:FRAME_SIZE].astype(np.float64)
    left, top, right, bottom = FACE_BOX
    cx, cy, ax, ay = (left + right) / 2, (top + bottom) / 2, (right - left) / 2, (bottom - top) / 2
    face = ((xx - cx) / ax) ** 2 + ((yy - cy) / ay) ** 2 <= 1
    eyes = np.zeros_like(face)
    for side in (-1, 1):
        eyes |= ((xx - cx - side * 22) / 9) ** 2 + ((yy - cy + 25) / 5) ** 2 <= 1
    background = np.stack([60 + 40 * xx / FRAME_SIZE, 80 + 30 * yy / FRAME_SIZE, 120 - 20 * xx / FRAME_SIZE], -1)
    frames = np.empty((len(opening), FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    for t, amount in enumerate(opening):
        frame = background.copy()
        frame[face] = (205, 160, 135)
        frame[eyes] = (40, 30, 30)
        mouth = ((xx - cx) / 24) ** 2 + ((yy - cy - 40) / (2 + 16 * amount)) ** 2 <= 1
        frame[mouth] = (90 - 60 * amount, 20, 30)
        frame += rng.normal(0, 3, frame.shape)
        frames[t] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def write_video(path: Path, frames: np.ndarray, fps: float = FPS, audio: Path | None = None) -> Path:
    """H.264 mp4 of RGB frames, with the wav `audio` as AAC when given."""
    writer = imageio_ffmpeg.write_frames(str(path), (frames.shape[2], frames.shape[1]), fps=fps, quality=8,
                                         ffmpeg_log_level="error",
                                         macro_block_size=1, audio_path=None if audio is None else str(audio),
                                         audio_codec=None if audio is None else "aac")
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame).tobytes())
    writer.close()
    return path


def talking_video(directory: Path, text: str, seed: int = 0) -> Path:
    """directory/talking.mp4: 25 fps frames for the whole speech, the mouth following its loudness."""
    wav = speak(text, directory / "speech.wav")
    sample_rate, speech = wavfile.read(wav)
    num_frames = len(speech) * FPS // sample_rate
    return write_video(directory / "talking.mp4", draw_frames(mouth_opening(speech, sample_rate, num_frames), seed),
                       audio=wav)
