"""Real material for the user-study tests: small MP4s with speech-like audio per method and clip, a study created
through `dtl study`, and a real uvicorn server on a free local port."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import soundfile as sf

from rendering.video import write_video

FPS = 25
SAMPLE_RATE = 16000


def syllable_audio(path: Path, seconds: float, seed: int) -> Path:
    """A voiced-speech stand-in: a 140 Hz harmonic tone switched on and off in syllables of random length."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    envelope = np.zeros_like(t)
    start = 0.1
    while start < seconds - 0.2:
        length = rng.uniform(0.12, 0.3)
        envelope[(t >= start) & (t < start + length)] = 1.0
        start += length + rng.uniform(0.08, 0.2)
    tone = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 6))
    sf.write(path, (0.25 * envelope * tone).astype(np.float32), SAMPLE_RATE)
    return path


def talking_frames(audio: np.ndarray, colour: tuple[int, int, int], size: int = 64) -> np.ndarray:
    """A face-coloured square whose dark mouth opens with the audio's loudness in each video frame."""
    per_frame = SAMPLE_RATE // FPS
    frames = np.zeros((len(audio) // per_frame, size, size, 3), np.uint8)
    frames[:] = colour
    for i in range(len(frames)):
        loudness = np.abs(audio[i * per_frame:(i + 1) * per_frame]).mean()
        opening = int(2 + 40 * loudness)
        frames[i, 40:40 + min(opening, 20), 20:44] = (40, 10, 10)
    return frames


def make_methods(root: Path, methods: dict[str, tuple[int, int, int]], clips: list[str],
                 seconds: float = 1.6) -> dict[str, Path]:
    """One folder of MP4s per method (same clip names, same speech per clip, a different look per method)."""
    folders = {}
    speech = root / "speech"
    speech.mkdir(parents=True, exist_ok=True)
    for i, clip in enumerate(clips):
        syllable_audio(speech / f"{clip}.wav", seconds, seed=i)
    for name, colour in methods.items():
        folder = root / name
        for clip in clips:
            audio, _ = sf.read(speech / f"{clip}.wav", dtype="float32")
            write_video(folder / f"{clip}.mp4", talking_frames(audio, colour), FPS, speech / f"{clip}.wav")
        folders[name] = folder
    return folders


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(app, root_path: str = ""):
    """A real uvicorn server of `app` in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, root_path=root_path, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the study server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
