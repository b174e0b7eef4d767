"""The synthetic demo corpus: layout, labels, determinism, resumability, and that it holds something to learn."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from dtl_foundation.arkit import INDEX
from datamodules.demo.build import build_demo_corpus
from dtl_foundation.mead import EMOTIONS, ClipKey, levels_of


def clips_of(root):
    info = json.loads((root / "CORPUS.json").read_text())
    for speaker in info["speakers"]:
        for emotion in EMOTIONS:
            for level in levels_of(emotion):
                for i in range(len(info["sentences"])):
                    yield ClipKey(speaker, emotion, level, f"{i + 1:03d}")


def rms_per_frame(wave: np.ndarray, sample_rate: int, frames: int, fps: float = 25.0) -> np.ndarray:
    hop = sample_rate / fps
    return np.array([np.sqrt(np.mean(wave[int(t * hop):int((t + 1) * hop)] ** 2)) for t in range(frames)])


def test_layout_labels_and_durations(demo_corpus):
    info = json.loads((demo_corpus / "CORPUS.json").read_text())
    assert info["synthetic"] is True and "SYNTHETIC" in info["description"]
    assert "SYNTHETIC" in (demo_corpus / "README.txt").read_text()
    keys = list(clips_of(demo_corpus))
    assert len(keys) == 6 * 22 * 10 and len({k.speaker for k in keys}) == 6
    for key in keys[::7]:
        audio, track = key.audio_path(demo_corpus), key.track_path(demo_corpus)
        wav = sf.info(audio)
        assert wav.samplerate == 16000 and wav.channels == 1 and wav.subtype == "PCM_16"
        values = np.load(track)
        assert values.shape[1] == 52 and values.dtype == np.float32
        assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1
        assert abs(wav.duration - len(values) / 25.0) <= 1 / 25.0


def test_mouth_aperture_follows_loudness(demo_corpus):
    apertures, loudness, per_clip = [], [], []
    for key in clips_of(demo_corpus):
        track = np.load(key.track_path(demo_corpus))
        wave, sr = sf.read(key.audio_path(demo_corpus))
        aperture = track[:, INDEX["jawOpen"]]
        rms = rms_per_frame(wave, sr, len(track))
        apertures.append(aperture)
        loudness.append(rms)
        per_clip.append(np.corrcoef(aperture, rms)[0, 1])
    pooled = np.corrcoef(np.concatenate(apertures), np.concatenate(loudness))[0, 1]
    print(f"jawOpen vs RMS loudness: pooled r = {pooled:.3f}, median per-clip r = {np.median(per_clip):.3f}")
    assert pooled >= 0.5 and np.median(per_clip) >= 0.5


def test_emotions_separable_on_held_out_speakers(demo_corpus):
    features, emotions, speakers = [], [], []
    for key in clips_of(demo_corpus):
        track = np.load(key.track_path(demo_corpus))
        features.append(np.concatenate([track.mean(0), track.std(0)]))
        emotions.append(key.emotion)
        speakers.append(key.speaker)
    x, y, s = np.array(features), np.array(emotions), np.array(speakers)
    train = np.isin(s, sorted(set(speakers))[:4])
    scaler = StandardScaler().fit(x[train])
    classifier = LogisticRegression(max_iter=3000).fit(scaler.transform(x[train]), y[train])
    accuracy = (classifier.predict(scaler.transform(x[~train])) == y[~train]).mean()
    print(f"emotion accuracy on 2 held-out speakers: {accuracy:.3f}")
    assert accuracy >= 0.9

    mean = {e: x[y == e, :52].mean(0) for e in EMOTIONS}
    assert mean["happy"][INDEX["mouthSmileLeft"]] > mean["neutral"][INDEX["mouthSmileLeft"]] + 0.1
    assert mean["sad"][INDEX["browInnerUp"]] > mean["neutral"][INDEX["browInnerUp"]] + 0.1
    assert mean["angry"][INDEX["browDownLeft"]] > mean["neutral"][INDEX["browDownLeft"]] + 0.1
    assert mean["surprised"][INDEX["eyeWideLeft"]] > mean["neutral"][INDEX["eyeWideLeft"]] + 0.1


def test_levels_scale_intensity(demo_corpus):
    smile = {level: np.mean([np.load(k.track_path(demo_corpus))[:, INDEX["mouthSmileLeft"]].mean()
                             for k in clips_of(demo_corpus) if k.emotion == "happy" and k.level == level])
             for level in (1, 2, 3)}
    assert smile[1] < smile[2] < smile[3]


def test_same_seed_same_bytes_and_resume(tmp_path):
    a = build_demo_corpus(tmp_path / "a", speakers=2, sentences=2, seed=5, workers=1, progress=False)
    b = build_demo_corpus(tmp_path / "b", speakers=2, sentences=2, seed=5, workers=2, progress=False)
    c = build_demo_corpus(tmp_path / "c", speakers=2, sentences=1, seed=6, workers=1, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "README.txt")
    assert len(files) == 2 * 22 * 2 * 2 + 1
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    key = ClipKey("M001", "happy", 2, "001")
    assert (a / key.track_path(a).relative_to(a)).read_bytes() != key.track_path(c).read_bytes()

    removed = [key.audio_path(a), key.track_path(a), ClipKey("W002", "sad", 3, "002").track_path(a)]
    for path in removed:
        path.unlink()
    build_demo_corpus(a, speakers=2, sentences=2, seed=5, workers=1, progress=False)
    for path in removed:
        assert path.read_bytes() == (b / path.relative_to(a)).read_bytes()
    assert not list(a.rglob("*.tmp"))


def test_other_settings_in_the_same_root_are_refused(tmp_path):
    root = build_demo_corpus(tmp_path / "d", speakers=1, sentences=1, workers=1, progress=False)
    try:
        build_demo_corpus(root, speakers=1, sentences=1, seed=99, workers=1, progress=False)
    except ValueError as e:
        assert "CORPUS.json" in str(e) and "other settings" in str(e)
    else:
        raise AssertionError("a corpus with other settings was silently mixed in")
