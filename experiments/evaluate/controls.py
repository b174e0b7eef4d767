"""Control videos that every metric must tell apart, made from the user's own data (`dtl eval --controls`).

The source is the first reference video (its frames and speech), or, with only a portrait, the portrait moved by a
few pixels per frame over the first generated video's speech. From it:

- faithful: the source itself (the positive control: a perfect generator)
- blob: the source blurred to a featureless orange blob (Gaussian sigma 8 px per 256 px, tinted), as a broken
  renderer makes
- other_person: another person's face (matplotlib's sample photograph of Grace Hopper) with the same motion and speech
- frozen: the source's first frame held for the whole clip
- audio_late_5, audio_late_15: the source with its speech delayed by 5 and 15 frames
- noisy: per-frame colour jitter (channel gains 0.85-1.15) and Gaussian noise (sigma 10 of 255)

Each is written at the source's relative path under OUT/controls/<control>/, so it matches the same reference and
names the same emotion, and is scored with the user's options in the same run.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from scipy.ndimage import gaussian_filter

from dtl_foundation.media.video_read import AUDIO_SAMPLE_RATE, VIDEO_FPS, read_video
from dtl_foundation.media.video_write import write_video

CONTROLS = ("faithful", "blob", "other_person", "frozen", "audio_late_5", "audio_late_15", "noisy")
BLOB_SIGMA_PER_256 = 8.0
ORANGE = np.array([1.0, 0.62, 0.3])


def blob(frames: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 blurred to a featureless orange blob."""
    sigma = BLOB_SIGMA_PER_256 * frames.shape[1] / 256
    blurred = gaussian_filter(frames.astype(np.float64), sigma=(0, sigma, sigma, 0))
    brightness = blurred.mean(-1, keepdims=True) / 255
    return np.clip(0.5 * blurred + 127.5 * ORANGE * (brightness + 0.3), 0, 255).astype(np.uint8)


def noisy(frames: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per-frame colour jitter (channel gains in [0.85, 1.15]) plus Gaussian noise of sigma 10."""
    rng = np.random.default_rng(seed)
    gains = rng.uniform(0.85, 1.15, size=(len(frames), 1, 1, 3))
    noise = rng.normal(0, 10, size=frames.shape)
    return np.clip(frames * gains + noise, 0, 255).astype(np.uint8)


def frozen(frames: np.ndarray) -> np.ndarray:
    return np.repeat(frames[:1], len(frames), axis=0)


def delayed(audio: np.ndarray, frames: int, fps: int = VIDEO_FPS, sample_rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """The speech `frames` video frames late: silence in front, the same length."""
    shift = int(round(frames * sample_rate / fps))
    return np.concatenate([np.zeros(shift, dtype=audio.dtype), audio[:len(audio) - shift]])


def animate(image: np.ndarray, count: int, size: tuple[int, int]) -> np.ndarray:
    """A still image (centre square, resized to `size` (H, W)) moved by up to 3 px, as a generator's head sways."""
    from PIL import Image

    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    still = np.asarray(Image.fromarray(image[top:top + side, left:left + side]).resize(
        (size[1], size[0]), Image.Resampling.LANCZOS))
    return np.stack([np.roll(still, (round(2 * np.cos(t / 7)), round(3 * np.sin(t / 5))), axis=(0, 1))
                     for t in range(count)])


def other_person_image() -> np.ndarray:
    """matplotlib's sample photograph of Grace Hopper (ships with matplotlib), as RGB."""
    import matplotlib.cbook
    from PIL import Image

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as image:
        return np.asarray(image.convert("RGB"))


def control_clips(frames: np.ndarray, audio: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every control's (frames, 16 kHz int16 audio) from a source clip."""
    other = animate(other_person_image(), len(frames), frames.shape[1:3])
    return {"faithful": (frames, audio), "blob": (blob(frames), audio), "other_person": (other, audio),
            "frozen": (frozen(frames), audio), "audio_late_5": (frames, delayed(audio, 5)),
            "audio_late_15": (frames, delayed(audio, 15)), "noisy": (noisy(frames), audio)}


def write_clip(path: Path, frames: np.ndarray, audio: np.ndarray, sample_rate: int = AUDIO_SAMPLE_RATE) -> Path:
    """An MP4 of the frames at 25 fps with the int16 audio muxed."""
    import soundfile

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        soundfile.write(wav, audio, sample_rate, subtype="PCM_16")
        return write_video(path, frames, VIDEO_FPS, audio=wav)


def source_clip(pairs: list, portrait: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    """The controls' source frames, audio and relative path: the first reference video, else the portrait moved
    over the first generated video's speech."""
    with_reference = [p for p in pairs if p.reference is not None]
    if with_reference:
        clip = read_video(with_reference[0].reference)
        return clip.frames, clip.audio, with_reference[0].name
    if portrait is None:
        raise ValueError("--controls needs reference videos (--reference) or a portrait (--portrait) to build from")
    from PIL import Image

    generated = read_video(pairs[0].generated)
    with Image.open(portrait) as image:
        still = np.asarray(image.convert("RGB"))
    return animate(still, len(generated.frames), generated.frames.shape[1:3]), generated.audio, pairs[0].name


def run_controls(pairs: list, out_dir: Path, portrait: Path | None,
                 score: Callable[[Path], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Write every control under out_dir/controls/<control>/ and score it with `score(folder)` (an evaluate call with
    the user's reference and options); per control its metrics, counts, numbers not valid and per-video rows."""
    frames, audio, name = source_clip(pairs, portrait)
    results = {}
    for control, (clip_frames, clip_audio) in control_clips(frames, audio).items():
        folder = out_dir / "controls" / control
        write_clip(folder / f"{name}.mp4", clip_frames, clip_audio)
        result = score(folder)
        results[control] = {k: result[k] for k in ("metrics", "counts", "not_valid", "per_video", "validity")}
    return results
