"""Audio decoding, blendshape-aligned features and the feature cache, on real espeak-ng speech."""

from __future__ import annotations

import logging
import pickle
import shutil
import subprocess
from pathlib import Path

import imageio_ffmpeg
import librosa
import numpy as np
import pytest
import soundfile
from scipy import signal as sps

from dtl_foundation.media.audio import AudioError, audio_duration, check_not_silent, load_audio
from datamodules.feature_cache import COMPUTATION_LOG_ENV, FeatureCache, precompute_features
from datamodules.features import (FEATURE_KINDS, LOG_MEL_FLOOR, FeatureConfig, FeatureStats, compute_features,
                                  feature_frames, fit_frames)

SR = 16000
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
REPO = Path(__file__).resolve().parents[1]


def espeak(path: Path, text: str) -> Path:
    assert shutil.which("espeak-ng"), ("espeak-ng is not installed (apt-get install espeak-ng, or run make test, "
                                       "which installs it)")
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return path


def ffmpeg_encode(src: Path, dst: Path, *codec: str) -> Path:
    subprocess.run([FFMPEG, "-nostdin", "-y", "-loglevel", "error", "-i", str(src), *codec, str(dst)], check=True)
    return dst


def has_encoder(name: str) -> bool:
    listing = subprocess.run([FFMPEG, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    return any(line.split()[1:2] == [name] for line in listing.splitlines() if line.strip())


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> dict[str, Path]:
    """One espeak-ng utterance (22.05 kHz wav) and its flac, m4a (AAC) and mp3 encodings."""
    root = tmp_path_factory.mktemp("speech")
    wav = espeak(root / "speech.wav", "Kindness is the language which the deaf can hear and the blind can see.")
    files = {"wav": wav, "flac": ffmpeg_encode(wav, root / "speech.flac"),
             "m4a": ffmpeg_encode(wav, root / "speech.m4a", "-c:a", "aac", "-b:a", "96k")}
    if has_encoder("libmp3lame"):
        files["mp3"] = ffmpeg_encode(wav, root / "speech.mp3", "-c:a", "libmp3lame", "-b:a", "96k")
    return files


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """20 distinct ~2 s utterances."""
    root = tmp_path_factory.mktemp("clips")
    return [espeak(root / f"clip{i:02d}.wav", f"This is sentence number {i}, spoken for the cache.") for i in range(20)]


# --- decoding ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["wav", "flac", "m4a", "mp3"])
def test_every_format_decodes_to_the_same_16k_mono_speech(speech, fmt):
    assert fmt in speech, "imageio-ffmpeg's ffmpeg lost its libmp3lame encoder"
    reference = load_audio(speech["wav"])
    wave = load_audio(speech[fmt])
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert np.abs(wave).max() <= 1.0
    native, native_rate = soundfile.read(speech["wav"])
    assert abs(len(reference) - len(native) * SR / native_rate) <= 1
    assert abs(len(wave) - len(reference)) <= 0.01 * len(reference)  # codecs may pad up to a frame
    # Align any encoder delay left after decoding, then compare the waveforms.
    n = min(len(wave), len(reference))
    lag = np.argmax(sps.correlate(wave[:n], reference[:n], mode="full", method="fft")) - (n - 1)
    assert abs(lag) <= 2048
    a, b = (wave[lag:n], reference[:n - lag]) if lag >= 0 else (wave[:n + lag], reference[-lag:n])
    assert np.corrcoef(a, b)[0, 1] > 0.95
    assert audio_duration(speech[fmt]) == pytest.approx(len(native) / native_rate, abs=0.03)


def test_stereo_is_averaged_and_resampled(tmp_path):
    rate = 44100
    t = np.arange(rate) / rate
    tone = 0.8 * np.sin(2 * np.pi * 440 * t)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([tone, np.zeros_like(tone)], axis=1), rate, subtype="FLOAT")
    wave = load_audio(path)
    assert len(wave) == SR
    assert np.abs(wave[1000:-1000]).max() == pytest.approx(0.4, abs=0.01)
    spectrum = np.abs(np.fft.rfft(wave))
    assert np.argmax(spectrum) * SR / len(wave) == pytest.approx(440, abs=2)
    assert audio_duration(path) == pytest.approx(1.0)


def test_errors_name_the_file_and_the_problem(tmp_path):
    missing = tmp_path / "missing.wav"
    garbage_wav = tmp_path / "garbage.wav"
    garbage_m4a = tmp_path / "garbage.m4a"
    empty = tmp_path / "empty.wav"
    garbage_wav.write_bytes(np.random.default_rng(0).bytes(4000))
    garbage_m4a.write_bytes(np.random.default_rng(1).bytes(4000))
    soundfile.write(empty, np.zeros(0, np.float32), SR)
    expected = {missing: "no such file", garbage_wav: "unreadable audio (soundfile:",
                garbage_m4a: "unreadable audio (ffmpeg:", empty: "empty audio (0 samples)"}
    for path, problem in expected.items():
        for reader in (load_audio, audio_duration):
            with pytest.raises(AudioError) as caught:
                reader(path)
            assert str(caught.value).startswith(f"{path}: {problem}"), str(caught.value)
            assert caught.value.path == str(path)
    assert "ffmpeg: " in str(pytest.raises(AudioError, load_audio, garbage_wav).value)

    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(SR, np.float32), SR)
    with pytest.raises(AudioError, match=r"silent audio \(peak -inf dBFS"):
        check_not_silent(load_audio(silent), silent)
    quiet = np.full(100, 10 ** (-70 / 20), np.float32)
    with pytest.raises(AudioError, match=r"^q.wav: silent audio \(peak -70.0 dBFS"):
        check_not_silent(quiet, "q.wav")
    assert check_not_silent(quiet, "q.wav", threshold_db=-80) == pytest.approx(-70, abs=0.01)

    restored = pickle.loads(pickle.dumps(AudioError("/x/a.m4a", "empty audio (0 samples)")))
    assert (str(restored), restored.path, restored.problem) == ("/x/a.m4a: empty audio (0 samples)", "/x/a.m4a",
                                                                "empty audio (0 samples)")


# --- features ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fps", [25, 30, 60])
def test_feature_shapes_follow_duration_and_kind(speech, fps):
    wave = load_audio(speech["wav"])
    frames = round(len(wave) / SR * fps)
    for kind, channels in zip(FEATURE_KINDS, (80, 13, 93)):
        cfg = FeatureConfig(kind=kind)
        features = compute_features(wave, fps, cfg)
        assert features.shape == (frames, channels * 4) == (frames, cfg.dim)
        assert features.dtype == np.float32 and np.isfinite(features).all()


@pytest.mark.parametrize("fps", [25, 30, 60])
def test_tone_burst_lights_up_the_right_blendshape_frames(fps):
    onset, offset = 1.2345, 2.0417
    t = np.arange(3 * SR) / SR
    wave = 1e-4 * np.random.default_rng(0).standard_normal(len(t))
    wave[(t >= onset) & (t < offset)] += 0.5 * np.sin(2 * np.pi * 1000 * t[(t >= onset) & (t < offset)])
    cfg = FeatureConfig()
    features = compute_features(wave.astype(np.float32), fps, cfg)
    energy = features.reshape(len(features), cfg.sub_frames, cfg.channels).mean(axis=(1, 2))
    loud = energy > (energy.min() + energy.max()) / 2
    assert abs(np.argmax(loud) - int(onset * fps)) <= 1
    assert abs(len(loud) - 1 - np.argmax(loud[::-1]) - int(offset * fps)) <= 1


def test_logmel_and_mfcc_match_direct_librosa_calls(speech):
    wave = load_audio(speech["wav"])
    mel = librosa.feature.melspectrogram(y=wave, sr=SR, n_fft=512, hop_length=160, win_length=400, n_mels=80,
                                         fmin=55.0, fmax=7600.0)
    log_mel = librosa.power_to_db(mel, amin=LOG_MEL_FLOOR, top_db=None)
    np.testing.assert_allclose(feature_frames(wave, FeatureConfig()), log_mel, rtol=1e-5, atol=1e-4)
    mfcc = librosa.feature.mfcc(S=log_mel, n_mfcc=13)
    np.testing.assert_allclose(feature_frames(wave, FeatureConfig(kind="mfcc")), mfcc, rtol=1e-5, atol=1e-3)

    # At 25 fps with 4 sub-frames, sub-frame k of frame t is centred at (4t + k + 0.5) * 10 ms: halfway
    # between 10 ms frames 4t+k and 4t+k+1 (librosa centres frame j at j * 10 ms); past the end, the last frame.
    features = compute_features(wave, 25, FeatureConfig())
    T, last = len(features), log_mel.shape[1] - 1
    j = (4 * np.arange(T)[:, None] + np.arange(4)[None, :]).ravel()
    expected = 0.5 * (log_mel[:, np.minimum(j, last)] + log_mel[:, np.minimum(j + 1, last)])
    np.testing.assert_allclose(features.reshape(T * 4, 80), expected.T, rtol=1e-5, atol=1e-3)


def test_num_frames_pads_with_the_last_row_and_truncates(speech):
    wave = load_audio(speech["wav"])
    cfg = FeatureConfig(kind="mfcc")
    natural = compute_features(wave, 30, cfg)
    longer = compute_features(wave, 30, cfg, num_frames=len(natural) + 3)
    np.testing.assert_array_equal(longer[:len(natural)], natural)
    np.testing.assert_array_equal(longer[len(natural):], np.repeat(natural[-1:], 3, axis=0))
    np.testing.assert_array_equal(compute_features(wave, 30, cfg, num_frames=10), natural[:10])
    np.testing.assert_array_equal(fit_frames(natural, len(natural) + 3), longer)


def test_config_key_is_stable_and_sensitive():
    assert FeatureConfig().key() == FeatureConfig(fmin=55, fmax=7600).key()
    assert len({FeatureConfig().key(), FeatureConfig(kind="mfcc").key(), FeatureConfig(sub_frames=2).key(),
                FeatureConfig(n_mels=64).key()}) == 4
    assert FeatureConfig(kind="logmel+mfcc", n_mels=40, sub_frames=2).dim == (40 + 13) * 2
    with pytest.raises(ValueError, match="kind"):
        FeatureConfig(kind="wav2vec")


def test_streaming_stats_match_numpy():
    rng = np.random.default_rng(0)
    arrays = [rng.normal(3.0, 2.0, size=(n, 5)).astype(np.float32) for n in (1, 7, 300, 40)]
    stats = FeatureStats()
    for a in arrays:
        stats.update(a)
    everything = np.concatenate(arrays).astype(np.float64)
    np.testing.assert_allclose(stats.mean, everything.mean(0), rtol=1e-6)
    np.testing.assert_allclose(stats.std(), everything.std(0), rtol=1e-5)
    assert stats.count == len(everything)


# --- cache ---------------------------------------------------------------------------------------------

def computations(log_file: Path) -> list[str]:
    return log_file.read_text().splitlines() if log_file.exists() else []


def test_cache_hits_misses_renames_and_edits(tmp_path, speech, monkeypatch):
    log_file = tmp_path / "computations.log"
    monkeypatch.setenv(COMPUTATION_LOG_ENV, str(log_file))
    audio = tmp_path / "a.wav"
    shutil.copy(speech["wav"], audio)
    cfg = FeatureConfig()
    cache = FeatureCache(tmp_path / "cache", cfg)
    direct = compute_features(load_audio(audio), 25, cfg)

    np.testing.assert_array_equal(cache.get(audio, 25), direct)
    np.testing.assert_array_equal(cache.get(audio, 25, num_frames=len(direct) + 2), fit_frames(direct, len(direct) + 2))
    assert cache.stats == {"hits": 1, "misses": 1, "corrupt": 0}
    assert len(computations(log_file)) == 1

    renamed = audio.rename(tmp_path / "renamed.wav")
    fresh = FeatureCache(tmp_path / "cache", cfg)  # a new instance: the hit comes from disk, not from memory
    np.testing.assert_array_equal(fresh.get(renamed, 25), direct)
    assert fresh.stats["hits"] == 1 and len(computations(log_file)) == 1

    fresh.get(renamed, 30)  # another fps is another entry
    FeatureCache(tmp_path / "cache", FeatureConfig(sub_frames=2)).get(renamed, 25)  # another config too
    assert len(computations(log_file)) == 3

    wave, rate = soundfile.read(renamed, dtype="float32")
    soundfile.write(renamed, wave * 0.5, rate)  # edited content, same name
    halved = fresh.get(renamed, 25)
    assert fresh.stats["misses"] == 2 and len(computations(log_file)) == 4
    assert not np.allclose(halved, direct)
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 4


def test_truncated_or_garbage_entry_is_recomputed(tmp_path, speech, caplog):
    cache = FeatureCache(tmp_path / "cache", FeatureConfig())
    direct = cache.get(speech["wav"], 25)
    entry = cache.entry_path(speech["wav"], 25)
    for damage in (entry.read_bytes()[:len(entry.read_bytes()) // 2], b"\x93NUMPY garbage", b""):
        entry.write_bytes(damage)
        with caplog.at_level(logging.WARNING, logger="datamodules.feature_cache"):
            np.testing.assert_array_equal(cache.get(speech["wav"], 25), direct)
        assert "corrupt feature cache entry" in caplog.text and str(entry) in caplog.text
        caplog.clear()
        np.testing.assert_array_equal(np.load(entry), direct)  # replaced on disk
    np.save(entry, np.zeros((3, 7), np.float32))  # loadable but not these features
    np.testing.assert_array_equal(cache.get(speech["wav"], 25), direct)
    assert cache.stats == {"hits": 0, "misses": 5, "corrupt": 4}


def test_precompute_reports_counts_and_errors(tmp_path, clips):
    bad = tmp_path / "bad.m4a"
    bad.write_bytes(b"not audio at all")
    cache = FeatureCache(tmp_path / "cache", FeatureConfig(kind="logmel+mfcc"))
    report = precompute_features([*clips[:6], bad, tmp_path / "gone.wav"], cache, 30, workers=2, progress=False)
    assert {k: report[k] for k in ("total", "computed", "cached", "failed")} == \
        {"total": 8, "computed": 6, "cached": 0, "failed": 2}
    assert report["errors"][0].startswith(f"{bad}: unreadable audio")
    assert report["errors"][1] == f"{tmp_path / 'gone.wav'}: no such file"
    again = precompute_features(clips[:6], cache, 30, workers=0, progress=False)
    assert (again["computed"], again["cached"], again["failed"]) == (0, 6, 0)
    assert cache.stats == {"hits": 6, "misses": 6, "corrupt": 0}


# Faults inside cache writes (kills, a writer frozen mid-write, a full disk): tests/faults/test_feature_cache_faults.py
