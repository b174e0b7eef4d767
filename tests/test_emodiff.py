"""EmoDiff learns on the demo corpus, generates any length without seams, and is reproducible by seed."""

from __future__ import annotations

import json

import hydra
import numpy as np
import pytest
import torch

from datamodules.long_audio import long_audio_batch
from metrics.boundary_continuity import BoundaryContinuity, discontinuous, window_boundaries
from training_helpers import mean_pose_scores


@pytest.fixture(scope="module")
def trained(trained_emodiff):
    return trained_emodiff


def test_untrained_emodiff_samples_the_mean_pose(trained):
    """The zero-initialised output head makes an untrained model predict the corpus mean: the floor to beat."""
    cfg, datamodule = trained["cfg"], trained["datamodule"]
    untrained = hydra.utils.instantiate(cfg.model)
    untrained.generator.bs_mean.copy_(torch.as_tensor(datamodule.blendshape_mean))
    untrained.generator.bs_std.copy_(torch.as_tensor(datamodule.blendshape_std))
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


def boundary_continuity(model, datamodule) -> dict[str, float]:
    """The test phase's boundary continuity (held-out sentences joined into 20 s clips) of the model as it is."""
    batch = long_audio_batch(datamodule.datasets["test"], min_seconds=20.0, max_clips=6)
    out = model.generate(batch, generator=torch.Generator().manual_seed(0))
    generator = model.generator
    window = generator.generation_window
    hop = window - generator.context_frames if generator.autoregressive else window
    metric = BoundaryContinuity()
    boundaries = torch.zeros_like(batch["mask"])
    boundaries[:, window_boundaries(out.shape[1], window, hop)] = True
    metric.update(out, batch["blendshapes"], batch["mask"], boundaries, batch["joins"])
    return {k: round(float(v), 3) for k, v in metric.compute().items()}


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "the autoregressive context does not remove the seams yet: after 300 steps the mean velocity at window "
    "boundaries on 20 s of held-out audio is 1.51x that inside windows with the context on and 1.64x with it off "
    "(the ground truth at the same frames: 0.92x, 1.02x; metrics/boundary_continuity.py); strict, so a fix shows "
    "as XPASS and this marker goes"))
def test_the_autoregressive_context_removes_the_seams_that_independent_windows_leave(trained):
    """With the context, a window boundary moves like any other frame; with the context off (the broken
    variant, independent windows) it jumps. test_sixty_seconds_without_seams's bound (the corpus's 99th
    percentile) holds for both, so it cannot tell them apart."""
    model, datamodule = trained["model"], trained["datamodule"]
    on = boundary_continuity(model, datamodule)
    model.generator.autoregressive = False
    try:
        off = boundary_continuity(model, datamodule)
    finally:
        model.generator.autoregressive = True
    print(f"boundary continuity: context on {on}, off {off}")
    assert discontinuous(off)  # the broken variant fails the check below
    assert not discontinuous(on)


@pytest.mark.slow
def test_generate_blendshapes_writes_live_link_csv(trained, demo_corpus, tmp_path, capsys):
    from dtl_foundation.arkit_live_link import read_live_link_csv
    from experiments.generate.command import main as generate

    clip = trained["datamodule"].datasets["test"].clips[0]
    wav = demo_corpus / clip.speaker / "audio" / clip.emotion / f"level_{clip.level}" / f"{clip.sentence}.wav"
    style = demo_corpus / clip.speaker / "arkit" / "happy" / "level_3" / "002.npy"
    args = ["blendshapes", "--checkpoint", str(trained["run_dir"]), "--audio", str(wav), "--emotion", "happy",
            "--level", "3", "--steps", "10", "--out", str(tmp_path)]
    assert generate(args + ["--fps", "30"]) == 0
    assert generate(args + ["--fps", "60", "--style", str(style), "--out", str(tmp_path / "styled"),
                            "--sampler", "heun"]) == 0
    take = read_live_link_csv(tmp_path / f"{wav.stem}_happy_level_3.csv", fps=30)
    metadata = lambda folder: json.loads((folder / f"{wav.stem}_happy_level_3.json").read_text())
    assert metadata(tmp_path)["sampler"] == trained["model"].generator.sampler
    assert metadata(tmp_path / "styled")["sampler"] == "heun" and metadata(tmp_path / "styled")["steps"] == 10
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
    assert "unknown emotion 'joyful'" in capsys.readouterr().err
    from lightning_modules.emotion_requests import check_emotion

    with pytest.raises(ValueError, match="neutral.*levels \\[1\\]"):
        check_emotion("neutral", 3)


@pytest.fixture(scope="module")
def control(trained, trained_emotion_classifier):
    """What score_emotion_control needs: the EMA generator, the frozen judge, six held-out neutral sentences."""
    from lightning_modules.emotion_classifier import BlendshapeEmotionClassifier
    from lightning_modules.emotion_control import (emotion_coefficients, heldout_neutral_clips, neutral_spread,
                                                   speaker_neutral)

    datamodule = trained["datamodule"]
    test = datamodule.datasets["test"].clips
    train = datamodule.datasets["train"].clips
    neutral, coefficients = speaker_neutral(test), emotion_coefficients(train)
    return {"model": trained["model"].generator,
            "judge": BlendshapeEmotionClassifier.load_frozen(trained_emotion_classifier["checkpoint"]),
            "clips": heldout_neutral_clips(test), "neutral": neutral, "coefficients": coefficients,
            "neutral_spread": neutral_spread(train, neutral, coefficients)}


def control_scores(control, **options):
    from lightning_modules.emotion_control import score_emotion_control

    return score_emotion_control(control["model"], control["judge"], control["clips"], neutral=control["neutral"],
                                 coefficients=control["coefficients"], **options)


@pytest.mark.slow
def test_the_label_alone_gives_the_asked_emotion_and_ignoring_it_gives_chance(control):
    """Held-out neutral sentences asked for each emotion with no reference clip and the default options (style
    from the checkpoint's bank, the model's guidance), and with guidance 1: the judge recognises the asked
    emotion. With every label-derived condition replaced by the null vector (a model that ignores labels) the
    same check falls to chance."""
    from experiments.generate.blendshapes import DEFAULT_STYLE_FROM

    model = control["model"]
    default = control_scores(control, style_from=DEFAULT_STYLE_FROM, guidance=model.guidance_scale)
    plain = control_scores(control, style_from=DEFAULT_STYLE_FROM, guidance=1.0)
    ignored = control_scores(control, style_from=DEFAULT_STYLE_FROM, guidance=model.guidance_scale,
                             ablate_label=True)
    print(f"asked emotion recognised, label only: {default.accuracy:.3f} (guidance {model.guidance_scale}), "
          f"{plain.accuracy:.3f} (guidance 1), label ablated {ignored.accuracy:.3f} of {len(default.asked)}")
    assert default.accuracy >= 0.9
    assert plain.accuracy >= 0.7
    assert ignored.accuracy <= 0.25  # chance is 1/8: one emotion (whatever the null draws) for every request


@pytest.mark.slow
def test_levels_order_expression_and_confidence_and_intensity_zero_is_neutral(control):
    """Level 1 < 2 < 3 in mean distance from the speaker's neutral (in the emotion's own coefficients) and in
    the judge's confidence (as log-odds: its probability saturates near 1), for every emotion with levels;
    intensity 0 stays within the corpus's neutral spread."""
    model = control["model"]
    scores = control_scores(control, style_from="bank", guidance=model.guidance_scale, levels=(1, 2, 3))
    for emotion in sorted(set(scores.asked) - {"neutral"}):
        magnitude = [scores.mean("magnitude", emotion, lv) for lv in (1, 2, 3)]
        confidence = [scores.mean("log_odds", emotion, lv) for lv in (1, 2, 3)]
        print(f"{emotion}: magnitude {magnitude}, confidence {confidence}")
        assert magnitude[0] < magnitude[1] < magnitude[2], emotion
        assert confidence[0] < confidence[1] < confidence[2], emotion
    zero = control_scores(control, style_from="bank", guidance=model.guidance_scale, intensity=0.0)
    asked = [e for e in set(zero.asked) - {"neutral"}]
    zero_magnitude = float(np.mean([zero.mean("magnitude", e, 3) for e in asked]))
    print(f"intensity 0: distance from the speaker's neutral {zero_magnitude:.4f}, the training speakers' "
          f"neutral clips {control['neutral_spread']:.4f}")
    assert zero_magnitude <= control["neutral_spread"]
    assert sum(r for r, e in zip(zero.recognised, zero.asked) if e == "neutral") == len(control["clips"])


@pytest.mark.slow
def test_a_two_emotion_schedule_switches_within_a_second_without_seams(control, trained, tmp_path):
    """Held-out neutral speech, happy for its first half and sad after: the judge's prediction over 1 s windows
    follows the schedule within 1 s of the change, and no frame jumps more than the corpus's own motion."""
    from dtl_foundation.mead import EMOTION_INDEX
    from lightning_modules.emotion_control import schedule_lag, windowed_predictions
    from lightning_modules.emotion_requests import read_emotion_schedule, schedule_vectors

    model, fps = control["model"], 25.0
    audio = np.concatenate([c.audio for c in control["clips"]])[: int(10 * fps)]
    frames, change = len(audio), len(audio) // 2
    schedule_file = tmp_path / "schedule.txt"
    schedule_file.write_text(f"0 happy\n{change / fps} sad  # the change\n")
    vectors = schedule_vectors(model, read_emotion_schedule(schedule_file), frames, fps)
    batch = {"audio": torch.from_numpy(audio)[None], "init": model.denormalize(torch.zeros(1, 52)),
             "init_known": torch.tensor([False]), "emotion_vector": vectors}
    track = model.generate(batch, generator=torch.Generator().manual_seed(0))[0]
    predictions = windowed_predictions(control["judge"], track, window=int(fps), hop=5)
    lag = schedule_lag(predictions, [(0, EMOTION_INDEX["happy"]), (change, EMOTION_INDEX["sad"])])
    motion = np.abs(np.diff(track.numpy(), axis=0)).mean(1)
    corpus = np.concatenate([np.abs(np.diff(c.blendshapes, axis=0)).mean(1)
                             for c in trained["datamodule"].datasets["train"].clips])
    print(f"schedule: judged emotion follows within {lag / fps:.2f} s; largest frame-to-frame motion "
          f"{motion.max():.4f} vs corpus 99th percentile {np.percentile(corpus, 99):.4f}")
    assert lag <= fps  # 1 s
    assert motion.max() <= np.percentile(corpus, 99)
