"""EmoDiff learns on the demo corpus, generates any length without seams, and is reproducible by seed."""

from __future__ import annotations

import hydra
import numpy as np
import pytest
import torch

from training_helpers import mean_pose_scores


@pytest.fixture(scope="module")
def trained(trained_emodiff):
    return trained_emodiff


def test_untrained_emodiff_samples_the_mean_pose(trained):
    """The zero-initialised output head makes an untrained model predict the corpus mean: the floor to beat."""
    cfg, datamodule = trained["cfg"], trained["datamodule"]
    untrained = hydra.utils.instantiate(cfg.model)
    untrained.bs_mean.copy_(torch.as_tensor(datamodule.blendshape_mean))
    untrained.bs_std.copy_(torch.as_tensor(datamodule.blendshape_std))
    batch = next(iter(datamodule.test_dataloader()))
    out = untrained.eval().generate(batch, steps=5)
    torch.testing.assert_close(out, untrained.denormalize(torch.zeros_like(out)).expand_as(out))


@pytest.mark.slow
def test_brief_training_beats_mean_pose_in_mouth_error_and_sync_on_held_out_speakers(trained):
    """The untrained model samples the mean pose (test above), so beating the mean pose beats both baselines."""
    mean_pose = mean_pose_scores(trained["datamodule"])
    m = trained["metrics"]
    print(f"held-out speakers: mouth error EmoDiff {m['test/mouth_error']:.4f} vs mean pose/untrained "
          f"{mean_pose['mouth_error']:.4f}; audio-mouth sync EmoDiff {m['test/sync']:.3f} (lag "
          f"{m['test/sync_lag']:+.0f}) vs {mean_pose['sync']:.3f}; upper-face FDD {m['test/upper_face_dd']:.4f}")
    assert m["test/mouth_error"] < 0.85 * mean_pose["mouth_error"]
    assert m["test/sync"] > mean_pose["sync"] + 0.2
    assert abs(m["test/sync_lag"]) <= 2


@pytest.mark.slow
def test_same_seed_same_output(trained):
    model, batch = trained["model"], next(iter(trained["datamodule"].test_dataloader()))
    a = model.generate(batch, generator=torch.Generator().manual_seed(7))
    b = model.generate(batch, generator=torch.Generator().manual_seed(7))
    c = model.generate(batch, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def long_input(datamodule, seconds: float = 60.0, fps: float = 25.0) -> dict[str, torch.Tensor]:
    """One batch item whose audio is test-split clips' features back to back, `seconds` long."""
    dataset = datamodule.datasets["test"]
    frames = int(seconds * fps)
    audio = np.concatenate([c.audio for c in dataset.clips])[:frames]
    assert len(audio) == frames
    item = dataset[0]
    batch = {k: v[None] for k, v in item.items()}
    batch["audio"] = torch.from_numpy(audio)[None]
    return batch


def per_frame_motion(track: np.ndarray) -> np.ndarray:
    return np.abs(np.diff(track, axis=0)).mean(1)


@pytest.mark.slow
def test_sixty_seconds_without_seams(trained):
    model, datamodule = trained["model"], trained["datamodule"]
    batch = long_input(datamodule)
    out = model.generate(batch, generator=torch.Generator().manual_seed(0))[0].numpy()
    assert out.shape == (1500, 52) and np.isfinite(out).all()

    corpus_motion = np.concatenate([per_frame_motion(c.blendshapes) for c in datamodule.datasets["train"].clips])
    window, context = model.hparams.generation_window, model.hparams.context_frames
    seams = np.arange(window, 1500, window - context)  # first frame each new window adds
    motion = per_frame_motion(out)
    seam_jumps = motion[seams - 1]
    limit = np.percentile(corpus_motion, 99)
    print(f"largest seam jump {seam_jumps.max():.4f}, corpus 99th percentile of frame-to-frame motion {limit:.4f}, "
          f"generated median motion {np.median(motion):.4f}")
    assert seam_jumps.max() <= limit


@pytest.mark.slow
def test_generate_blendshapes_writes_live_link_csv(trained, demo_corpus, tmp_path, capsys):
    from dtl_foundation.arkit import read_live_link_csv
    from experiments.generate.command import main as generate

    clip = trained["datamodule"].datasets["test"].clips[0]
    wav = demo_corpus / clip.speaker / "audio" / clip.emotion / f"level_{clip.level}" / f"{clip.sentence}.wav"
    style = demo_corpus / clip.speaker / "arkit" / "happy" / "level_3" / "002.npy"
    args = ["blendshapes", "--checkpoint", str(trained["run_dir"]), "--audio", str(wav), "--emotion", "happy",
            "--level", "3", "--steps", "10", "--out", str(tmp_path)]
    assert generate(args + ["--fps", "30"]) == 0
    assert generate(args + ["--fps", "60", "--style", str(style), "--out", str(tmp_path / "styled")]) == 0
    take = read_live_link_csv(tmp_path / f"{wav.stem}_happy_level_3.csv", fps=30)
    duration = len(clip.blendshapes) / 25.0
    assert abs(len(take.blendshapes) - duration * 30) <= 1
    assert take.blendshapes.min() >= 0 and take.blendshapes.max() <= 1
    styled = read_live_link_csv(tmp_path / "styled" / f"{wav.stem}_happy_level_3.csv", fps=60)
    assert abs(len(styled.blendshapes) - duration * 60) <= 1


@pytest.mark.slow
def test_generate_rejects_bad_audio_and_emotions_naming_the_file(trained, tmp_path, capsys):
    import soundfile as sf

    from experiments.generate.command import main as generate

    silent, garbage = tmp_path / "silent.wav", tmp_path / "garbage.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    garbage.write_bytes(b"not audio at all")
    common = ["blendshapes", "--checkpoint", str(trained["run_dir"]), "--emotion", "sad", "--level", "2",
              "--out", str(tmp_path / "out")]
    assert generate(common + ["--audio", str(silent), str(garbage)]) == 1
    err = capsys.readouterr().err
    assert f"{silent}: silent audio" in err and f"{garbage}: unreadable audio" in err
    with pytest.raises(SystemExit):
        generate(["blendshapes", "--checkpoint", str(trained["run_dir"]), "--audio", str(silent),
                  "--emotion", "joyful"])
    assert "invalid choice: 'joyful'" in capsys.readouterr().err
    from experiments.generate.blendshapes import emotion_condition

    with pytest.raises(ValueError, match="neutral.*levels \\[1\\]"):
        emotion_condition("neutral", 3)


@pytest.mark.slow
def test_samples_show_the_asked_emotion_with_guidance(trained, trained_emotion_classifier):
    """Held-out audio asked for each emotion (label + a reference clip of that emotion, other sentence): the
    frozen classifier must recognise the asked emotion in >= 70 % of the samples."""
    from dtl_foundation.mead import EMOTIONS
    from lightning_modules.emotion_classifier import BlendshapeEmotionClassifier
    from metrics.blendshape import EmotionAccuracy

    model, datamodule = trained["model"], trained["datamodule"]
    metric = EmotionAccuracy(BlendshapeEmotionClassifier.load_frozen(trained_emotion_classifier["checkpoint"]))
    test = datamodule.datasets["test"]
    batch = next(iter(datamodule.test_dataloader()))
    b, style_frames = batch["audio"].shape[0], batch["style"].shape[1]
    for emotion, name in enumerate(EMOTIONS):
        level = 1 if name == "neutral" else 3
        reference = next(c for c in test.clips if c.emotion == name and c.level == level and c.sentence == "010")
        style = torch.zeros(b, style_frames, 52)
        n = min(len(reference.blendshapes), style_frames)
        style[:, :n] = torch.from_numpy(reference.blendshapes[:n])
        style_mask = torch.zeros(b, style_frames, dtype=torch.bool)
        style_mask[:, :n] = True
        asked = dict(batch, emotion=torch.full((b,), emotion), level=torch.full((b,), level), style=style,
                     style_mask=style_mask)
        samples = model.generate(asked, steps=10, guidance_scale=3.0, generator=torch.Generator().manual_seed(emotion))
        metric.update(samples, batch["mask"], asked["emotion"])
    result = metric.compute()
    print(f"asked emotion recognised in {float(result['accuracy']):.3f} of {8 * b} samples "
          f"(mean confidence {float(result['confidence']):.3f})")
    assert result["accuracy"] >= 0.7
