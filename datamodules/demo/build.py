"""`dtl data demo`: build the SYNTHETIC demo corpus in the MEAD layout, deterministically and resumably."""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from tqdm import tqdm

from dtl_foundation.arkit import INDEX, NPY_ORDER, NUM_BLENDSHAPES
from datamodules.demo.expressions import blinks, expression_offset, micro_noise, prosody, slow_drift
from datamodules.demo.speech import require_espeak, synthesize
from datamodules.demo.visemes import mouth_track
from dtl_foundation.atomic_files import atomic_save_npy, atomic_write_bytes, atomic_write_text
from dtl_foundation.mead import CORPUS_INFO_FILE, EMOTIONS, ClipKey, levels_of

log = logging.getLogger(__name__)
GENERATOR = "dreamtalk-lab demo corpus v1"
DESCRIPTION = ("SYNTHETIC demo corpus: espeak-ng speech and ARKit blendshape tracks derived from it "
               "(phoneme visemes scaled by loudness, emotion offsets, blinks). Not real people, not a face data set.")

# Harvard sentences (IEEE 1969, public domain): short, phonetically varied.
SENTENCES: tuple[str, ...] = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
)


@dataclass(frozen=True)
class SpeakerVoice:
    voice: str
    pitch: int
    pitch_range: int
    rate: int
    expressiveness: float


def speaker_ids(count: int) -> list[str]:
    return [f"{'M' if i % 2 == 0 else 'W'}{i + 1:03d}" for i in range(count)]


def sentence_texts(count: int) -> list[str]:
    """`count` sentences: the list above, then deterministic recombinations of its halves."""
    texts = list(SENTENCES[:count])
    i = 0
    while len(texts) < count:
        a, b = SENTENCES[i % len(SENTENCES)], SENTENCES[(i * 7 + 3) % len(SENTENCES)]
        texts.append(a.rstrip(".").rsplit(" ", 2)[0] + " " + b.split(" ", 3)[-1])
        i += 1
    return texts


def _rng(seed: int, *keys: str) -> np.random.Generator:
    return np.random.default_rng([seed] + [zlib.crc32(k.encode()) for k in keys])


def speaker_voice(speaker: str, seed: int) -> SpeakerVoice:
    rng = _rng(seed, speaker, "voice")
    male = speaker.startswith("M")
    variant = f"+m{rng.integers(1, 8)}" if male else f"+f{rng.integers(1, 6)}"
    return SpeakerVoice(voice="en-us" + variant, pitch=int(rng.integers(30, 48) if male else rng.integers(55, 75)),
                        pitch_range=int(rng.integers(40, 65)), rate=int(rng.integers(150, 185)),
                        expressiveness=float(rng.uniform(0.8, 1.2)))


def speaker_face(speaker: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A speaker's rest pose and per-blendshape expressiveness scale (idiosyncrasy)."""
    rng = _rng(seed, speaker, "face")
    rest = np.clip(rng.normal(0.03, 0.02, NUM_BLENDSHAPES), 0, 0.1).astype(np.float32)
    scale = np.clip(rng.lognormal(0.0, 0.15, NUM_BLENDSHAPES), 0.7, 1.35).astype(np.float32)
    return rest, scale


def loudness_envelope(wave: np.ndarray, sample_rate: int, fps: float, frames: int) -> np.ndarray:
    """RMS of each frame's samples [t/fps, (t+1)/fps), normalised by the clip's 95th percentile."""
    edges = np.round(np.arange(frames + 1) * sample_rate / fps).astype(int)
    rms = np.array([np.sqrt(np.mean(wave[a:b] ** 2)) if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:])])
    return (rms / max(np.percentile(rms, 95), 1e-8)).astype(np.float32)


@dataclass(frozen=True)
class ClipJob:
    root: str
    key: ClipKey
    text: str
    seed: int
    fps: float
    sample_rate: int


def make_clip(job: ClipJob) -> str:
    """Synthesise one clip's speech and derive its blendshape track; write both atomically."""
    key = job.key
    voice = speaker_voice(key.speaker, job.seed)
    speed, pitch_shift, range_factor, volume = prosody(key.emotion, key.level)
    utterance = synthesize(job.text, voice=voice.voice, rate=round(voice.rate * speed),
                           pitch=int(np.clip(voice.pitch + pitch_shift, 0, 99)),
                           pitch_range=int(np.clip(voice.pitch_range * range_factor, 0, 100)),
                           volume=int(np.clip(100 * volume, 10, 200)),
                           seed=zlib.crc32(f"{job.seed}/{key.clip_id}".encode()))
    wave = soxr.resample(utterance.wave / 32768.0, utterance.sample_rate, job.sample_rate).astype(np.float32)
    wave = np.clip(wave, -1.0, 1.0)
    frames = max(int(round(len(wave) / job.sample_rate * job.fps)), 1)

    rng = _rng(job.seed, key.clip_id)
    rest, scale = speaker_face(key.speaker, job.seed)
    loudness = loudness_envelope(wave, job.sample_rate, job.fps, frames)
    track = rest + mouth_track(utterance.phonemes, loudness, job.fps)
    offset = expression_offset(key.emotion, key.level, scale * voice.expressiveness)
    track += offset[None, :] * slow_drift(frames, job.fps, rng)
    closure = blinks(frames, job.fps, rng)
    for side in ("Left", "Right"):
        i = INDEX[f"eyeBlink{side}"]
        track[:, i] = np.maximum(track[:, i], closure)
    track += micro_noise(frames, rng)
    track = np.clip(track, 0.0, 1.0).astype(np.float32)

    root = Path(job.root)
    buf = io.BytesIO()
    sf.write(buf, wave, job.sample_rate, subtype="PCM_16", format="WAV")
    atomic_write_bytes(key.audio_path(root), buf.getvalue())
    atomic_save_npy(key.track_path(root), track)
    return key.clip_id


def corpus_settings(speakers: int, sentences: int, seed: int, fps: float, sample_rate: int) -> dict:
    ids = speaker_ids(speakers)
    return {"synthetic": True, "description": DESCRIPTION, "generator": GENERATOR, "fps": fps, "arkit_order": NPY_ORDER,
            "sample_rate": sample_rate, "seed": seed, "emotions": list(EMOTIONS),
            "sentences": sentence_texts(sentences),
            "speakers": {s: asdict(speaker_voice(s, seed)) for s in ids}}


def build_demo_corpus(root: str | os.PathLike, *, speakers: int = 6, sentences: int = 10, seed: int = 0,
                      fps: float = 25.0, sample_rate: int = 16000, workers: int | None = None,
                      progress: bool = True, overwrite: bool = False) -> Path:
    """Write (or complete) the demo corpus under `root`; a complete corpus with the same settings returns at once."""
    root = Path(root).resolve()
    settings = corpus_settings(speakers, sentences, seed, float(fps), sample_rate)
    info_path = root / CORPUS_INFO_FILE
    if info_path.exists() and not overwrite:
        existing = json.loads(info_path.read_text())
        existing.setdefault("arkit_order", NPY_ORDER)  # built before CORPUS.json stated it: the same Apple order
        if existing != settings:
            raise ValueError(f"{info_path}: a demo corpus with other settings is already here; "
                             "choose another root or pass overwrite=True")
    texts = settings["sentences"]
    jobs = [ClipJob(str(root), ClipKey(s, e, level, f"{i + 1:03d}"), text, seed, float(fps), sample_rate)
            for s in settings["speakers"] for e in EMOTIONS for level in levels_of(e)
            for i, text in enumerate(texts)]
    missing = [j for j in jobs
               if overwrite or not (j.key.audio_path(root).exists() and j.key.track_path(root).exists())]
    if missing:
        require_espeak()
        workers = os.cpu_count() or 1 if workers is None else workers
        bar = tqdm(total=len(missing), desc="demo corpus (synthetic)", unit="clip", disable=not progress)
        if workers <= 1:
            for job in missing:
                make_clip(job)
                bar.update()
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                for _ in pool.map(make_clip, missing, chunksize=16):
                    bar.update()
        bar.close()
    atomic_write_text(info_path, json.dumps(settings, indent=2) + "\n")
    atomic_write_text(root / "README.txt", DESCRIPTION + "\nBuilt by `dtl data demo`; "
                      f"{len(jobs)} clips, seed {seed}.\n")
    log.info("demo corpus (SYNTHETIC): %d clips in %s (%d built now)", len(jobs), root, len(missing))
    return root
