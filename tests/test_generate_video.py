"""`dtl generate video` end to end: EmoDiff -> rig render -> face-vid2vid motion transfer -> MP4, on a real portrait
(skimage's astronaut) and real speech (espeak-ng), with briefly trained models; and the portrait crop/paste-back."""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_renderer_finetune import one_thread, renderer_overrides, talking_corpus  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory):
    import skimage.data

    path = tmp_path_factory.mktemp("portrait") / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(path)
    return path


@pytest.fixture(scope="module")
def runs(tiny_corpus, talking_corpus, tmp_path_factory, one_thread):  # noqa: F811  (the fixtures imported above)
    """An EmoDiff run and a renderer run, each trained for a couple of steps through `dtl train`."""
    from experiments.train import train
    from training_helpers import compose_train

    out = tmp_path_factory.mktemp("e2e")
    train(compose_train(["experiment=emodiff_demo", "run_id=e2e", f"paths.output_root={out}",
                         f"data.corpus_dir={tiny_corpus}", "data.build_demo=false", f"paths.cache_dir={out}/cache",
                         "trainer.max_steps=2",
                         "logger=csv", "test=false", "trainer.accelerator=cpu", "callbacks.blendshape_figure=null"]))
    train(compose_train(renderer_overrides(talking_corpus, out, 2, ["data.pairs_per_epoch=8", "data.batch_size=4"])))
    return {"emodiff": out / "emodiff_demo" / "e2e", "renderer": out / "renderer_demo" / "tune"}


@pytest.mark.slow
def test_portrait_and_speech_become_an_mp4_in_sync(runs, astronaut_png, tmp_path, capsys):
    from dtl_foundation.arkit_live_link import read_live_link_csv
    from dtl_foundation.media.audio import audio_duration
    from experiments.generate.command import main
    from dtl_foundation.media.video_write import check_video, probe_video
    from talking_video import speak

    speech = speak("The renderer moves the astronaut's lips in time with this sentence.", tmp_path / "speech.wav")
    silent = tmp_path / "silent.wav"
    from scipy.io import wavfile

    wavfile.write(silent, 16000, np.zeros(16000, dtype=np.int16))
    out = tmp_path / "out"
    code = main(["video", "--portrait", str(astronaut_png), "--audio", str(speech), str(silent), "--emotion", "happy",
                 "--level", "2", "--checkpoint", str(runs["emodiff"]), "--renderer", str(runs["renderer"]),
                 "--steps", "5", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1, captured.err  # the silent file failed, the speech went through
    assert "silent.wav: silent audio" in captured.err
    video = out / "speech_happy_level_2.mp4"
    assert check_video(video, speech, 25.0) is None
    probe = probe_video(video)
    seconds = audio_duration(speech)
    print(f"{video}: {probe}; audio {seconds:.3f} s; {captured.out.strip()}")
    assert abs(probe.duration - seconds) <= 1 / 25 and probe.audio_codec == "aac" and probe.video_codec == "h264"
    assert (probe.width, probe.height) == (512, 512)  # the whole portrait, the face pasted back
    assert check_video(out / "speech_happy_level_2_avatar.mp4", speech, 25.0) is None
    track = read_live_link_csv(out / "speech_happy_level_2_arkit.csv", fps=25.0)
    assert abs(len(track.blendshapes) / track.fps - seconds) <= 2 / 25
    assert not (out / "silent_happy_level_2.mp4").exists()


@pytest.mark.slow
def test_the_default_renderer_is_the_training_free_warp(runs, astronaut_png, tmp_path, capsys, caplog):
    from experiments.generate.command import main
    from dtl_foundation.media.video_write import check_video, probe_video
    from talking_video import speak

    speech = speak("Without a renderer run the warp animates the portrait.", tmp_path / "speech.wav")
    out = tmp_path / "out"
    assert main(["video", "--portrait", str(astronaut_png), "--audio", str(speech), "--emotion", "happy",
                 "--checkpoint", str(runs["emodiff"]), "--steps", "5", "--out", str(out)]) == 0, capsys.readouterr()
    video = out / "speech_happy_level_3.mp4"
    assert check_video(video, speech, 25.0) is None
    assert (probe_video(video).width, probe_video(video).height) == (512, 512)
    strip = np.asarray(Image.open(out / "speech_happy_level_3_strip.png"))
    assert strip.shape == (192, 6 * 192, 3) and strip.std() > 20  # six face crops of the astronaut
    assert "2 faces found; using face 0" in caplog.text  # the choice among the portrait's faces is logged
    metadata = json.loads((out / "speech_happy_level_3_arkit.json").read_text())
    assert (metadata["renderer"], metadata["motion_reference"]) == ("warp", "neutral")


def test_a_portrait_without_a_face_is_refused(runs, tmp_path, capsys):
    from experiments.generate.command import main
    from talking_video import speak

    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(blank)
    speech = speak("Hello.", tmp_path / "hello.wav")
    code = main(["video", "--portrait", str(blank), "--audio", str(speech), "--emotion", "sad", "--level", "1",
                 "--checkpoint", str(runs["emodiff"]), "--renderer", str(runs["renderer"]), "--out", str(tmp_path)])
    assert code == 2
    assert f"{blank}: no face found" in capsys.readouterr().err
    assert main(["video", "--portrait", str(blank), "--audio", str(speech), "--emotion", "sad", "--level", "1",
                 "--checkpoint", str(runs["emodiff"]), "--out", str(tmp_path / "warp")]) == 2  # the warp renderer
    assert f"{blank}: no face found" in capsys.readouterr().err
    assert not (tmp_path / "warp").exists()  # nothing half written
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main(["video", "--portrait", str(broken), "--audio", str(speech), "--emotion", "sad", "--level", "1",
                 "--checkpoint", str(runs["emodiff"]), "--renderer", str(runs["renderer"]),
                 "--out", str(tmp_path)]) == 2
    assert f"{broken}: not a readable image" in capsys.readouterr().err


def test_portrait_crop_and_paste_back(astronaut_png):
    from dtl_foundation.media.portrait import crop, detect_crop_box, load_portrait, paste_back

    image = load_portrait(astronaut_png)
    box = detect_crop_box(image, source=astronaut_png)
    # dlib puts the astronaut's face at about x 180-265, y 85-170 of the 512 px image.
    assert 150 < box.left + box.side / 2 < 290 and 90 < box.top + box.side / 2 < 200 and 120 < box.side < 320
    face = crop(image, box, 256)
    back = paste_back(image, face, box)
    assert back.shape == image.shape
    inside = (slice(int(box.top + 0.3 * box.side), int(box.top + 0.7 * box.side)),
              slice(int(box.left + 0.3 * box.side), int(box.left + 0.7 * box.side)))
    assert np.abs(back[inside].astype(float) - image[inside]).mean() < 6  # crop + paste of itself is near-identity
    far = (slice(400, 512), slice(0, 100))
    assert np.array_equal(back[far], image[far])  # outside the box nothing changes
    grey = np.full_like(face, 128)
    assert np.abs(paste_back(image, grey, box)[inside].astype(float) - 128).max() <= 1


@pytest.fixture(scope="module")
def talking_test_split_run(talking_corpus, tmp_path_factory, one_thread):  # noqa: F811  (the fixtures imported above)
    """EmoDiff trained for 2 steps on the talking corpus with M001, whose clips have rendered videos, held out."""
    from experiments.train import train
    from training_helpers import compose_train

    out = tmp_path_factory.mktemp("held_out")
    train(compose_train(["experiment=emodiff_demo", "run_id=heldout", f"paths.output_root={out}",
                         f"data.corpus_dir={talking_corpus}", "data.build_demo=false", f"paths.cache_dir={out}/cache",
                         "data.test_speakers=[M001]", "trainer.max_steps=2", "logger=csv", "test=false",
                         "trainer.accelerator=cpu", "callbacks.blendshape_figure=null"]))
    return out / "emodiff_demo" / "heldout"


@pytest.mark.slow
def test_eval_from_a_checkpoint_generates_the_held_out_split_then_scores_it(talking_test_split_run, runs,
                                                                           talking_corpus, tmp_path, capsys):  # noqa: F811  (the fixture imported above)
    import json
    import os

    from experiments.evaluate.command import main
    from experiments.compare.run_logs import wandb_run_record
    from dtl_foundation.media.video_write import check_video

    generated, out = tmp_path / "generated", tmp_path / "eval"
    args = [str(generated), "--checkpoint", str(talking_test_split_run), "--renderer", str(runs["renderer"]),
            "--steps", "3", "--metrics", "psnr", "ssim", "cpbd", "--sample-frames", "2", "--out", str(out)]
    assert main(args + ["--limit", "2"]) == 0, capsys.readouterr().err
    assert "2 videos generated, 0 kept" in capsys.readouterr().err
    # M001's clips with a video, in manifest order: angry before happy (surprised is the third)
    first_two = ["M001_angry_level_3_001", "M001_happy_level_3_001"]
    assert sorted(p.name for p in (generated / "videos").iterdir()) == [f"{c}.mp4" for c in first_two]
    for clip in first_two:
        speaker, emotion, _, level, sentence = clip.split("_")
        audio = talking_corpus / speaker / "audio" / emotion / f"level_{level}" / f"{sentence}.wav"
        assert check_video(generated / "videos" / f"{clip}.mp4", audio, 25.0) is None
        assert (generated / "avatars" / f"{clip}_arkit.csv").is_file()
    result = json.loads((out / "metrics.json").read_text())
    assert result["counts"]["psnr"] == 2 and result["counts"]["cpbd"] == 2, result["counts"]
    references = {Path(row["reference"]).relative_to(talking_corpus).as_posix() for row in result["per_video"]}
    assert references == {"M001/video/front/angry/level_3/001.mp4", "M001/video/front/happy/level_3/001.mp4"}
    assert {row["emotion"] for row in result["per_video"]} == {"angry", "happy"}
    [run_file] = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert wandb_run_record(run_file)["run_group"] == "emodiff_demo"  # the training run's group

    # the same command with a larger limit keeps the two videos and adds the third
    stamps = {p.name: p.stat().st_mtime_ns for p in (generated / "videos").iterdir()}
    os.environ.setdefault("WANDB_MODE", "offline")
    assert main(args + ["--limit", "3", "--out", str(tmp_path / "eval3"), "--no-wandb"]) == 0
    assert "1 videos generated, 2 kept" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in (generated / "videos").iterdir() if p.name in stamps} == stamps
    assert json.loads((tmp_path / "eval3" / "metrics.json").read_text())["counts"]["psnr"] == 3

    # without --renderer the warp renderer makes them: the portrait's own face moves, no 64-px network's blur
    warp_args = [str(tmp_path / "warp"), "--checkpoint", str(talking_test_split_run), "--steps", "3",
                 "--metrics", "psnr", "--sample-frames", "2", "--limit", "2", "--out", str(tmp_path / "eval_warp"),
                 "--no-wandb"]
    assert main(warp_args) == 0, capsys.readouterr().err
    warp_psnr = json.loads((tmp_path / "eval_warp" / "metrics.json").read_text())["metrics"]["psnr"]
    print(f"held-out PSNR: warp {warp_psnr:.2f} dB, face-vid2vid (2 training steps) {result['metrics']['psnr']:.2f}")
    assert warp_psnr > result["metrics"]["psnr"] + 3


def test_eval_from_a_checkpoint_needs_a_split_with_videos(runs, tmp_path, capsys):
    from experiments.evaluate.command import main

    # the tiny corpus has no videos: its test split gives nothing to score, and the error says how to get some;
    # without --renderer the warp renderer is used, with one the face-vid2vid run
    for renderer in ([], ["--renderer", str(runs["renderer"])]):
        assert main([str(tmp_path / "g"), "--checkpoint", str(runs["emodiff"])] + renderer) == 1
        err = capsys.readouterr().err
        assert "no test clip has a reference video" in err and "dtl data videos" in err


@pytest.mark.slow
def test_batch_videos_keep_one_name_per_input_and_skip_finished_ones(runs, astronaut_png, tmp_path, capsys):
    from experiments.generate.command import main
    from talking_video import speak

    first, second = tmp_path / "a" / "talk.wav", tmp_path / "b" / "talk.wav"
    for path, text in ((first, "One."), (second, "Two.")):
        path.parent.mkdir()
        speak(text, path)
    out = tmp_path / "out"
    args = ["video", "--portrait", str(astronaut_png), "--audio", str(first), str(second), "--emotion", "sad",
            "--level", "1", "--checkpoint", str(runs["emodiff"]), "--steps", "2", "--out", str(out)]
    assert main(args) == 0
    videos = {name: out / f"{name}_sad_level_1.mp4" for name in ("a-talk", "b-talk")}
    assert all(v.exists() for v in videos.values()) and not (out / "talk_sad_level_1.mp4").exists()
    before = {name: v.stat().st_mtime_ns for name, v in videos.items()}
    assert main(args + ["--skip-existing"]) == 0
    assert "already there (--skip-existing)" in capsys.readouterr().out
    assert {name: v.stat().st_mtime_ns for name, v in videos.items()} == before


def test_a_failed_avatar_encode_on_its_thread_fails_the_take(tmp_path):
    """render_take encodes the avatar MP4 on a second thread beside the warp: its failure must reach the caller."""
    import skimage.data

    from dtl_foundation.arkit import INDEX, NUM_BLENDSHAPES
    from dtl_foundation.media.video_write import VideoError
    from experiments.generate.video import portrait_from_image, render_take
    from rendering.warp.renderer import WarpRenderer

    track = np.zeros((6, NUM_BLENDSHAPES), np.float32)
    track[:, INDEX["jawOpen"]] = np.linspace(0, 0.6, 6)
    with WarpRenderer() as renderer:
        portrait = portrait_from_image(skimage.data.astronaut(), renderer.avatar_size, source="astronaut")
        good = {"video": tmp_path / "take.mp4", "avatar": tmp_path / "take_avatar.mp4", "strip": tmp_path / "strip.png"}
        render_take(renderer, portrait, track, 25.0, good, progress=False)
        assert all(path.stat().st_size > 0 for path in good.values())
        broken = dict(good, avatar=tmp_path / "take_avatar.mp4" / "not_a_folder.mp4")  # under a file: cannot write
        with pytest.raises((VideoError, OSError)):
            render_take(renderer, portrait, track, 25.0, broken, progress=False)
