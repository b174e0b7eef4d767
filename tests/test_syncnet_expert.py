"""The Wav2Lip-style lip-sync expert, trained briefly on rendered demo videos with espeak-ng speech, tells in-sync
from 10-frame-shifted audio on held-out speakers (sklearn ROC AUC), and its LSE-C ranks in-sync video above shifted
video. The standard SyncNet (syncnet_v2.model) cannot be had offline; LSE here is the trained expert's, computed by
metrics/syncnet.py's offset search on the expert's embeddings."""

from __future__ import annotations

import csv
import shutil
import subprocess
from pathlib import Path

import hydra
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from test_video_emotion_classifier import face_cache_dir, video_corpus  # noqa: F401  (shared session fixtures)

from datamodules.video_frames_datamodule import SyncWindowDataset, sync_window_count
from lightning_modules.syncnet_expert import SyncNetExpert
from metrics.syncnet import SAMPLES_PER_FRAME

SHIFT = 10
EXPERT_STEPS = 800


@pytest.fixture(scope="module")
def trained_expert(video_corpus, face_cache_dir, tmp_path_factory) -> dict:  # noqa: F811  (the fixtures imported above)
    """`dtl train experiment=syncnet_expert_demo` on level-3 clips of 3 sentences per speaker."""
    from experiments.train import train
    from training_helpers import compose_train

    out = tmp_path_factory.mktemp("syncnet_expert")
    cfg = compose_train(["experiment=syncnet_expert_demo", "run_id=expert", f"paths.output_root={out}",
                         f"data.corpus_dir={video_corpus}", f"data.cache_dir={face_cache_dir}",
                         "data.build_demo=false", "data.sentences=3", f"trainer.max_steps={EXPERT_STEPS}",
                         "trainer.check_val_every_n_epoch=4", "trainer.accelerator=cpu"])
    metrics = train(cfg)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("test")
    checkpoint = out / "syncnet_expert_demo" / "expert" / "checkpoints" / "best.ckpt"
    return {"cfg": cfg, "metrics": metrics, "datamodule": datamodule, "checkpoint": checkpoint,
            "model": SyncNetExpert.load_frozen(checkpoint)}


def test_sync_windows_pair_frames_with_their_own_or_shifted_audio():
    from datamodules.video_frames_datamodule import FaceClip

    rng = np.random.default_rng(0)
    clip = FaceClip("c", "S", 0, rng.integers(0, 255, (40, 64, 64, 3), dtype=np.uint8),
                    rng.normal(size=(13, 4 * 40 + 3)).astype(np.float32))
    assert sync_window_count(clip) == 36
    dataset = SyncWindowDataset([clip], train=False, eval_shift=SHIFT, eval_stride=5)
    labels = [float(dataset[i]["label"]) for i in range(len(dataset))]
    assert labels == [1.0, 0.0] * (len(dataset) // 2)
    positive, negative = dataset[2], dataset[3]  # window v = 5: audio at 5, then at 15
    assert positive["frames"].shape == (15, 32, 64)
    torch.testing.assert_close(positive["frames"][:3], torch.from_numpy(clip.frames[5, 32:]).permute(2, 0, 1) / 255)
    torch.testing.assert_close(positive["mfcc"][0], torch.from_numpy(clip.mfcc[:, 20:40]))
    torch.testing.assert_close(negative["mfcc"][0], torch.from_numpy(clip.mfcc[:, 60:80]))
    last = dataset[len(dataset) - 1]  # near the end the shift goes the other way
    assert float(last["label"]) == 0.0


@pytest.mark.slow
def test_expert_separates_in_sync_from_shifted_pairs_on_held_out_speakers(trained_expert):
    model, datamodule = trained_expert["model"], trained_expert["datamodule"]
    test_speakers = {c.speaker for c in datamodule.clips["test"]}
    assert not test_speakers & {c.speaker for c in datamodule.clips["train"]}
    similarities, labels = [], []
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            similarities.append(model(batch["frames"], batch["mfcc"]))
            labels.append(batch["label"])
    auc = roc_auc_score(torch.cat(labels).numpy(), torch.cat(similarities).numpy())
    print(f"sync expert AUC (in sync vs audio shifted {SHIFT} frames) on held-out {sorted(test_speakers)}: {auc:.3f} "
          f"over {len(torch.cat(labels))} windows; Lightning's test/auc {trained_expert['metrics']['test/auc']:.3f}")
    assert auc >= 0.9
    assert abs(auc - trained_expert["metrics"]["test/auc"]) < 1e-4


def delayed(audio: np.ndarray, frames: int) -> np.ndarray:
    """The audio `frames` video frames late: silence first, the same length."""
    shift = frames * SAMPLES_PER_FRAME
    return np.concatenate([np.zeros(shift, audio.dtype), audio[:-shift]])


@pytest.mark.slow
def test_expert_lse_c_of_in_sync_video_exceeds_shifted_video_and_finds_the_offset(trained_expert, tmp_path):
    from datamodules.manifest import Manifest
    from datamodules.video_frames_datamodule import FaceVideoCache

    model, cfg = trained_expert["model"], trained_expert["cfg"]
    manifest = Manifest.load(Path(cfg.paths.run_dir) / "video_manifest.jsonl")
    cache = FaceVideoCache(cfg.data.cache_dir, size=cfg.data.size, crop_scale=cfg.data.crop_scale)
    scores = []  # (in sync, audio 10 frames late) per held-out video
    for record in manifest.split("test"):
        face = cache.load(record.video_path)
        late = delayed(face.audio, SHIFT)
        scores.append((model.sync_score(face.frames, face.audio), model.sync_score(face.frames, late)))
    lse_c = np.array([(good.lse_c, bad.lse_c) for good, bad in scores])
    lse_d = np.array([(good.lse_d, bad.lse_d) for good, bad in scores])
    offsets = np.array([(good.offset, bad.offset) for good, bad in scores])
    print(f"expert LSE-C over {len(scores)} held-out videos: in sync {lse_c[:, 0].mean():.3f}, audio {SHIFT} frames "
          f"late {lse_c[:, 1].mean():.3f} (higher in sync for {np.mean(lse_c[:, 0] > lse_c[:, 1]):.0%}); LSE-D "
          f"{lse_d[:, 0].mean():.3f} vs {lse_d[:, 1].mean():.3f} (lower in sync for "
          f"{np.mean(lse_d[:, 0] < lse_d[:, 1]):.0%}); AV offsets found {offsets[:4].tolist()} ...")
    # LSE-C (median - minimum over offsets +-15) is nearly shift-invariant inside that range: the shift shows as the
    # AV offset, and LSE-C drops only by the windows that lose their audio, hence a small margin in the mean.
    assert lse_c[:, 0].mean() > lse_c[:, 1].mean()
    assert np.mean(lse_d[:, 0] < lse_d[:, 1]) >= 0.75
    assert np.mean(np.abs(offsets[:, 0]) <= 1) >= 0.75
    assert np.mean(np.abs(offsets[:, 1] + SHIFT) <= 1) >= 0.75  # audio late by 10 frames: offset -10

    # the same through `dtl eval --sync-expert` on a real mp4 whose audio track is delayed by 10 frames
    from experiments.evaluate.command import main as eval_main

    video = Path(manifest.split("test")[0].video_path)
    generated = tmp_path / "generated"
    generated.mkdir()
    shutil.copy(video, generated / "in_sync.mp4")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(video),
                    "-af", f"adelay={SHIFT * 40}:all=1", "-c:v", "copy", "-c:a", "aac", "-shortest",
                    str(generated / "late_audio.mp4")], check=True)
    out = tmp_path / "eval"
    assert eval_main([str(generated), "--metrics", "lse_expert", "--sync-expert", str(trained_expert["checkpoint"]),
                      "--out", str(out), "--no-wandb"]) == 0
    rows = {row["video"]: row for row in csv.DictReader((out / "per_video.csv").open())}
    assert abs(float(rows["in_sync"]["av_offset_expert"])) <= 1
    assert abs(float(rows["late_audio"]["av_offset_expert"]) + SHIFT) <= 1
    assert float(rows["in_sync"]["lse_d_expert"]) < float(rows["late_audio"]["lse_d_expert"])


@pytest.mark.slow
def test_expert_lse_controls_in_sync_beats_late_5_late_15_and_frozen(trained_expert, monkeypatch):
    """Negative controls for the expert's LSE-D on held-out videos: speech 5 and 15 frames late, a frozen first
    frame; the in-sync video must score lowest on most videos, and the check fails with LSE made constant."""
    from datamodules.manifest import Manifest
    from datamodules.video_frames_datamodule import FaceVideoCache
    from experiments.evaluate.controls import delayed as late
    from experiments.evaluate.controls import frozen
    from metrics.syncnet import LipSyncScore

    model, cfg = trained_expert["model"], trained_expert["cfg"]
    manifest = Manifest.load(Path(cfg.paths.run_dir) / "video_manifest.jsonl")
    cache = FaceVideoCache(cfg.data.cache_dir, size=cfg.data.size, crop_scale=cfg.data.crop_scale)
    faces = [cache.load(record.video_path) for record in manifest.split("test")]

    def check() -> None:
        lse_d = {name: [] for name in ("faithful", "late_5", "late_15", "frozen")}
        for face in faces:
            lse_d["faithful"].append(model.sync_score(face.frames, face.audio).lse_d)
            lse_d["late_5"].append(model.sync_score(face.frames, late(face.audio, 5)).lse_d)
            lse_d["late_15"].append(model.sync_score(face.frames, late(face.audio, 15)).lse_d)
            lse_d["frozen"].append(model.sync_score(frozen(face.frames), face.audio).lse_d)
        good = np.array(lse_d["faithful"])
        for name in ("late_5", "late_15", "frozen"):
            share = float(np.mean(good < np.array(lse_d[name])))
            print(f"expert LSE-D in sync {good.mean():.3f} vs {name} {np.mean(lse_d[name]):.3f}: lower in sync for "
                  f"{share:.0%} of {len(faces)} videos")
            assert share >= 0.75, (name, share)

    check()
    constant = LipSyncScore(lse_c=0.3, lse_d=1.0, offset=0, mean_distances=torch.ones(31), num_windows=10)
    with monkeypatch.context() as patch:
        patch.setattr(model, "sync_score", lambda frames, audio: constant)
        with pytest.raises(AssertionError):
            check()


@pytest.mark.slow
def test_expert_finds_warp_videos_of_held_out_clips_in_sync_and_5_late_frames_out(trained_expert, tmp_path):
    """The warp renderer in video space: each held-out clip's first frame, animated by the warp with the clip's own
    blendshapes and head poses and muxed with its speech, is found in sync by the expert (AV offset 0); the same
    video with its speech 5 frames late is found at offset -5, and its LSE-D is higher."""
    from datamodules.manifest import Manifest
    from datamodules.tracks import load_track
    from datamodules.video_frames_datamodule import FaceVideoCache
    from dtl_foundation.mead import ClipKey
    from dtl_foundation.media.portrait import find_face
    from dtl_foundation.media.video_read import read_frames
    from dtl_foundation.media.video_write import write_video
    from rendering.warp.renderer import WarpRenderer

    late_by = 5
    model, cfg = trained_expert["model"], trained_expert["cfg"]
    manifest = Manifest.load(Path(cfg.paths.run_dir) / "video_manifest.jsonl")
    cache = FaceVideoCache(tmp_path / "faces", size=cfg.data.size, crop_scale=cfg.data.crop_scale)
    rows = []  # (in-sync offset, late offset, in-sync LSE-D, late LSE-D) per held-out clip
    with WarpRenderer() as warp:
        for record in manifest.split("test"):
            key = ClipKey(record.speaker, record.emotion, record.level, record.sentence)
            track, fps = load_track(record.track_path, npy_fps=record.fps)
            poses = np.load(key.head_pose_path(Path(manifest.root)))
            portrait = read_frames(record.video_path, int(fps))[0]
            frames = np.concatenate(list(warp.animate(portrait, find_face(portrait).landmarks, track, poses=poses)))
            video = tmp_path / f"{record.clip_id}.mp4"
            write_video(video, frames, fps, record.audio_path)
            face = cache.load(video)
            good = model.sync_score(face.frames, face.audio)
            bad = model.sync_score(face.frames, delayed(face.audio, late_by))
            rows.append((good.offset, bad.offset, good.lse_d, bad.lse_d))
    rows = np.array(rows)
    print(f"warp videos of {len(rows)} held-out clips: AV offsets in sync {rows[:, 0].astype(int).tolist()}, speech "
          f"{late_by} frames late {rows[:, 1].astype(int).tolist()}; LSE-D {rows[:, 2].mean():.3f} vs "
          f"{rows[:, 3].mean():.3f}")
    assert len(rows) >= 4
    assert np.mean(np.abs(rows[:, 0]) <= 1) >= 0.75
    assert np.mean(np.abs(rows[:, 1] + late_by) <= 1) >= 0.75
    assert np.mean(rows[:, 2] < rows[:, 3]) >= 0.75
