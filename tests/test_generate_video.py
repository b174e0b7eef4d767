"""`dtl generate video` end to end: EmoDiff -> rig render -> face-vid2vid motion transfer -> MP4, on a real portrait
(skimage's astronaut) and real speech (espeak-ng), with briefly trained models; and the portrait crop/paste-back."""

from __future__ import annotations

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
def runs(tiny_corpus, talking_corpus, tmp_path_factory, one_thread):  # noqa: F811
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
    from datamodules.arkit import read_live_link_csv
    from datamodules.audio import audio_duration
    from experiments.generate import main
    from rendering.video import check_video, probe_video
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


def test_a_portrait_without_a_face_is_refused(runs, tmp_path, capsys):
    from experiments.generate import main
    from talking_video import speak

    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(blank)
    speech = speak("Hello.", tmp_path / "hello.wav")
    code = main(["video", "--portrait", str(blank), "--audio", str(speech), "--emotion", "sad", "--level", "1",
                 "--checkpoint", str(runs["emodiff"]), "--renderer", str(runs["renderer"]), "--out", str(tmp_path)])
    assert code == 2
    assert f"{blank}: no face found" in capsys.readouterr().err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    assert main(["video", "--portrait", str(broken), "--audio", str(speech), "--emotion", "sad", "--level", "1",
                 "--checkpoint", str(runs["emodiff"]), "--renderer", str(runs["renderer"]),
                 "--out", str(tmp_path)]) == 2
    assert f"{broken}: not a readable image" in capsys.readouterr().err


def test_portrait_crop_and_paste_back(astronaut_png):
    from rendering.portrait import crop, detect_crop_box, load_portrait, paste_back

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
