"""The face-frame emotion classifier learns MEAD's 8 emotions from rendered demo videos and judges held-out speakers'
videos, through the face-crop cache and through `dtl eval --emotion-classifier`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.video_frames_datamodule import FaceVideoCache, VideoFramesDataModule, load_face_video, select_records
from dtl_foundation.media.face_square import crop_square
from dtl_foundation.media.video_read import read_frames

CLASSIFIER_STEPS = 1000


@pytest.fixture(scope="session")
def video_corpus(demo_corpus, tmp_path_factory) -> Path:
    """The demo corpus's audio and tracks (linked) in a folder of its own, where the video datamodules render the
    clips they select (once per session, resumable); videos the source already has are linked instead."""
    root = tmp_path_factory.getbasetemp() / "video_corpus"
    if root.is_dir():
        return root
    root.mkdir()
    for entry in demo_corpus.iterdir():
        if entry.is_file():
            os.symlink(entry, root / entry.name)
            continue
        (root / entry.name).mkdir()
        for kind in ("audio", "arkit"):
            os.symlink(entry / kind, root / entry.name / kind)
        for video in (entry / "video").rglob("*.mp4"):
            target = root / video.relative_to(demo_corpus)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(video, target)
    return root


@pytest.fixture(scope="session")
def face_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.getbasetemp() / "face_crops"


@pytest.fixture(scope="module")
def trained_video_emotion(video_corpus, face_cache_dir, tmp_path_factory) -> dict:
    """`dtl train experiment=video_emotion_classifier_demo` (level-3 clips of 3 sentences, 64 px crops)."""
    from experiments.train import train
    from training_helpers import compose_train

    out = tmp_path_factory.mktemp("video_emotion")
    cfg = compose_train(["experiment=video_emotion_classifier_demo", "run_id=judge", f"paths.output_root={out}",
                         f"data.corpus_dir={video_corpus}", f"paths.cache_dir={face_cache_dir.parent}",
                         f"data.cache_dir={face_cache_dir}", "data.build_demo=false", "data.sentences=3",
                         f"trainer.max_steps={CLASSIFIER_STEPS}", "trainer.check_val_every_n_epoch=4",
                         "trainer.accelerator=cpu"])
    metrics = train(cfg)
    return {"cfg": cfg, "metrics": metrics,
            "checkpoint": out / "video_emotion_classifier_demo" / "judge" / "checkpoints" / "best.ckpt"}


def test_face_crops_are_the_same_from_the_cache_and_from_a_decoded_video(video_corpus, tmp_path):
    video = next(video_corpus.glob("*/video/front/happy/level_3/001.mp4"), None)
    if video is None:  # render one clip here when no test trained first
        from datamodules.demo.videos import render_demo_videos

        speaker = sorted(p.name for p in video_corpus.iterdir() if p.is_dir())[0]
        render_demo_videos(video_corpus, size=128, clip_ids=[f"{speaker}_happy_level_3_001"], progress=False)
        video = next(video_corpus.glob("*/video/front/happy/level_3/001.mp4"))
    cache = FaceVideoCache(tmp_path / "cache", size=64)
    first = cache.load(video)
    again = cache.load(video)  # from the .npz now
    assert cache.path_for(video).is_file()
    np.testing.assert_array_equal(first.frames, again.frames)
    direct = load_face_video(video, size=64)
    np.testing.assert_array_equal(first.frames, direct.frames)
    assert first.frames.shape[1:] == (64, 64, 3) and first.frames.dtype == np.uint8
    assert first.audio.dtype == np.int16 and len(first.audio) > 16000  # ~2 s of espeak-ng speech
    left, top, right, bottom = first.box
    assert right - left > 20 and bottom - top > 20
    # the crop holds the face, not background: its centre differs from the raw frame's corner (background) colour
    raw = read_frames(video)
    corner = raw[0, :8, :8].reshape(-1, 3).mean(0)
    assert np.abs(first.frames[0, 24:40, 24:40].reshape(-1, 3).mean(0) - corner).max() > 20
    # and it is the face box's square, resized: cropping the raw frames with the stored box gives it again
    np.testing.assert_array_equal(crop_square(raw, first.box, 64, 1.3), first.frames)

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(ValueError, match=str(broken)):
        cache.load(broken)


def test_selection_keeps_neutral_and_the_first_sentences(demo_corpus):
    from datamodules.corpus import scan_corpus

    manifest = scan_corpus(demo_corpus, val_speakers=1, test_speakers=1, progress=False)
    kept = select_records(manifest.records, levels=[3], sentences=2, emotions=None)
    speakers = {r.speaker for r in manifest.records}
    assert len(kept) == len(speakers) * 8 * 2
    assert {r.level for r in kept if r.emotion != "neutral"} == {3}
    assert {r.sentence for r in kept} == {"001", "002"}


@pytest.mark.slow
def test_trained_classifier_reaches_80_percent_on_held_out_speakers(trained_video_emotion):
    metrics = trained_video_emotion["metrics"]
    cfg = trained_video_emotion["cfg"]
    import hydra

    datamodule: VideoFramesDataModule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("test")
    test_speakers = {c.speaker for c in datamodule.clips["test"]}
    train_speakers = {c.speaker for c in datamodule.clips["train"]}
    assert test_speakers and not test_speakers & train_speakers
    torch.manual_seed(0)
    untrained = hydra.utils.instantiate(cfg.model).eval()
    correct = total = 0
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            correct += int((untrained(batch["image"]).argmax(-1) == batch["emotion"]).sum())
            total += len(batch["emotion"])
    chance = correct / total
    print(f"video emotion classifier on held-out speaker {sorted(test_speakers)}: frame accuracy "
          f"{metrics['test/accuracy']:.3f}, clip accuracy {metrics['test/clip_accuracy']:.3f}, untrained {chance:.3f}")
    assert metrics["test/accuracy"] >= 0.8
    assert metrics["test/clip_accuracy"] >= 0.8
    assert metrics["test/accuracy"] > chance + 0.4


@pytest.mark.slow
def test_dtl_eval_judges_held_out_videos_with_the_trained_classifier(trained_video_emotion, tmp_path):
    from datamodules.manifest import Manifest
    from experiments.evaluate.command import evaluate
    from experiments.evaluate.scorers import EvalOptions
    from lightning_modules.video_emotion_classifier import VideoEmotionClassifier

    cfg = trained_video_emotion["cfg"]
    manifest = Manifest.load(Path(cfg.paths.run_dir) / "video_manifest.jsonl")
    test_videos = [Path(r.video_path) for r in manifest.split("test")]
    generated = tmp_path / "generated"
    for video in test_videos:  # the held-out speaker's real videos stand in for generated ones
        target = generated / video.relative_to(Path(cfg.data.corpus_dir))
        target.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(video, target)
    checkpoint = trained_video_emotion["checkpoint"]
    result = evaluate(generated, options=EvalOptions(metrics=("emotion",), emotion_classifier=checkpoint),
                      progress=False)
    print(f"dtl eval emotion accuracy (trained judge) on {len(test_videos)} held-out videos: "
          f"{result['metrics']['emotion_accuracy']:.3f}")
    assert result["counts"]["emotion_accuracy"] == len(test_videos)
    assert result["metrics"]["emotion_accuracy"] >= 0.8
    assert "video emotion classifier" in result["notes"]["emotion"]

    judge = VideoEmotionClassifier.load_frozen(checkpoint)
    assert not judge.training and not any(p.requires_grad for p in judge.parameters())
    face = load_face_video(test_videos[0], judge.hparams.image_size, judge.hparams.crop_scale)
    probabilities = judge.video_probabilities(face.frames)
    torch.testing.assert_close(probabilities.sum(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="face crops"):
        judge.video_probabilities(face.frames[:, :32, :32])


@pytest.mark.slow
def test_trained_judge_controls_asked_emotion_beats_neutral_and_other_emotion_videos(trained_video_emotion,
                                                                                     monkeypatch):
    """Negative controls for the trained video emotion judge on the held-out speaker: each expressive video asked
    for its own emotion (positive) against the speaker's neutral video asked for the same emotion and a video of another
    emotion asked for it; the check fails once the judge returns constant probabilities."""
    from controls_helpers import assert_ranks, clip_item

    from datamodules.manifest import Manifest
    from experiments.evaluate.face_scorers import EmotionScores
    from dtl_foundation.media.video_read import read_video

    cfg = trained_video_emotion["cfg"]
    records = Manifest.load(Path(cfg.paths.run_dir) / "video_manifest.jsonl").split("test")
    neutral = next(r for r in records if r.emotion == "neutral")
    expressive = [r for r in records if r.emotion != "neutral"][:6]
    scorer = EmotionScores(trained_video_emotion["checkpoint"], None, "cpu")
    neutral_frames = read_video(neutral.video_path).frames

    def check() -> None:
        confidence = {"faithful": [], "neutral_video": [], "other_emotion_video": []}
        for record in expressive:
            frames = read_video(record.video_path).frames
            other = next(r for r in expressive if r.emotion != record.emotion)
            for name, images in (("faithful", frames), ("neutral_video", neutral_frames),
                                 ("other_emotion_video", read_video(other.video_path).frames)):
                row = scorer.score(clip_item(images, emotion=record.emotion, name=Path(record.video_path).stem))
                confidence[name].append(row["emotion_confidence"])
        means = {name: float(np.mean(values)) for name, values in confidence.items()}
        print(f"trained judge's confidence in the asked emotion on {len(expressive)} held-out videos: {means}")
        assert_ranks(means, "faithful", ["neutral_video", "other_emotion_video"], margin=0.2, better="max")

    check()
    uniform = torch.full((8,), 1 / 8)
    with monkeypatch.context() as patch:
        patch.setattr(scorer.video_classifier, "video_probabilities", lambda frames: uniform)
        with pytest.raises(AssertionError):
            check()
