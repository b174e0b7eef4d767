"""The ARKit face rig, its EGL rendering, MP4 writing with speech and the demo corpus videos (glTF avatars:
test_gltf.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from dtl_foundation.arkit import ARKIT_NAMES, INDEX, NUM_BLENDSHAPES
from dtl_foundation.media.audio import load_audio
from rendering.default_rig import build_default_rig, cache_key, default_rig
from rendering.face_params import FaceParams
from rendering.gl_renderer import EGL_DEBIAN_PACKAGES, EGLUnavailableError, FaceRenderer, RenderError, create_context
from rendering.rig import FaceRig, RigError
from dtl_foundation.media.video_write import VideoError, check_video, probe_video, write_video

GOLDEN = Path(__file__).parent / "data" / "default_rig_golden.png"
GOLDEN_POSE = np.array([20.0, -6.0, 4.0, 0.0, 0.0, 0.0])
SHAPE_SIZE = 128


def golden_coefficients() -> np.ndarray:
    c = np.zeros(NUM_BLENDSHAPES, np.float32)
    c[INDEX["jawOpen"]], c[INDEX["mouthSmileLeft"]], c[INDEX["mouthSmileRight"]] = 0.25, 0.5, 0.4
    c[INDEX["eyeLookOutLeft"]], c[INDEX["eyeLookInRight"]], c[INDEX["browInnerUp"]] = 0.3, 0.3, 0.4
    return c


@pytest.fixture(scope="module")
def rig(tmp_path_factory) -> FaceRig:
    return default_rig(cache_dir=tmp_path_factory.mktemp("rigs"))


@pytest.fixture(scope="module")
def shape_frames(rig) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Neutral then each of the 52 shapes at 1, at 128 px; and the landmarks in pixels."""
    coeffs = np.vstack([np.zeros(NUM_BLENDSHAPES), np.eye(NUM_BLENDSHAPES)])
    with FaceRenderer(rig, SHAPE_SIZE) as renderer:
        frames = renderer.render(coeffs).numpy().astype(np.int32)
        marks = {k: renderer.project(v)[0] for k, v in rig.landmarks.items()}
    return frames, marks


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    """Real speech from espeak-ng (a system package of the test machine, see .ci/run)."""
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "The birch canoe slid on the smooth planks."], check=True,
                   capture_output=True, timeout=60)
    return path


# --- the rig ---------------------------------------------------------------------------------------------

def test_default_rig_is_deterministic_complete_and_cached(tmp_path):
    built = build_default_rig()
    again = build_default_rig()
    for field in ("vertices", "triangles", "deltas", "colors"):
        assert np.array_equal(getattr(built, field), getattr(again, field)), field
    assert built.deltas.shape == (NUM_BLENDSHAPES, built.num_vertices, 3) and built.missing == []
    assert np.all(np.abs(built.deltas).reshape(NUM_BLENDSHAPES, -1).max(axis=1) > 1e-3)  # every shape moves > 1 mm

    cached = default_rig(cache_dir=tmp_path)
    files = list(tmp_path.glob("default_rig-*.npz"))
    assert [f.name for f in files] == [f"default_rig-v1-{cache_key(FaceParams())}.npz"]
    assert np.array_equal(cached.deltas, built.deltas) and cached.landmarks.keys() == built.landmarks.keys()
    # the second call reads the cache: a marked rig saved there comes back
    marked = FaceRig(vertices=built.vertices + 1.0, triangles=built.triangles, deltas=built.deltas,
                     colors=built.colors, name="marked")
    marked.save(files[0])
    assert default_rig(cache_dir=tmp_path).name == "marked"
    # a damaged cache file is rebuilt, not trusted
    files[0].write_bytes(b"not an npz")
    assert np.array_equal(default_rig(cache_dir=tmp_path).vertices, built.vertices)


def test_speakers_get_different_faces():
    a, b = (FaceParams.sample(np.random.default_rng(seed)) for seed in (1, 2))
    assert a != b
    rig_a, rig_b = build_default_rig(a), build_default_rig(b)
    assert not np.allclose(rig_a.colors, rig_b.colors)
    with pytest.raises(RigError, match="head_width"):
        FaceParams(head_width=2.0)


def test_apply_is_neutral_plus_weighted_deltas_in_batches(rig):
    rng = np.random.default_rng(0)
    coeffs = rng.uniform(0, 1, (2, 3, NUM_BLENDSHAPES)).astype(np.float32)
    posed = rig.apply(torch.from_numpy(coeffs))
    assert posed.shape == (2, 3, rig.num_vertices, 3)
    expected = rig.vertices + np.einsum("k,kvc->vc", coeffs[1, 2].astype(np.float64), rig.deltas)
    assert np.allclose(posed[1, 2].numpy(), expected, atol=2e-6)
    assert torch.equal(rig.apply(np.zeros(NUM_BLENDSHAPES)), torch.from_numpy(rig.vertices))
    with pytest.raises(RigError, match="52"):
        rig.apply(np.zeros((4, 51)))
    with pytest.raises(RigError, match="NaN"):
        rig.apply(np.full(NUM_BLENDSHAPES, np.nan))


def test_blended_normals_are_exact_at_rest_and_for_single_shapes(rig):
    coeffs = np.vstack([np.zeros(NUM_BLENDSHAPES), np.eye(NUM_BLENDSHAPES)[[INDEX["jawOpen"], INDEX["cheekPuff"]]]])
    geometry = rig.posed_geometry(coeffs)
    exact = rig.vertex_normals(geometry[..., :3])
    assert torch.allclose(geometry[..., 3:], exact, atol=1e-4)
    assert torch.allclose(geometry[..., :3], rig.apply(coeffs))


def test_rig_rejects_arrays_that_do_not_fit():
    with pytest.raises(RigError, match="deltas"):
        FaceRig(vertices=np.zeros((3, 3)), triangles=[[0, 1, 2]], deltas=np.zeros((52, 4, 3)))
    with pytest.raises(RigError, match="triangle indices"):
        FaceRig(vertices=np.zeros((3, 3)), triangles=[[0, 1, 3]], deltas=np.zeros((52, 3, 3)))


# --- rendering -------------------------------------------------------------------------------------------

def _render_golden(rig: FaceRig) -> np.ndarray:
    with FaceRenderer(rig, 256) as renderer:
        return renderer.render(golden_coefficients(), GOLDEN_POSE)[0].numpy()


def test_golden_image_of_the_default_rig(rig):
    """Set DTL_REGENERATE_GOLDEN=1 to rewrite the PNG after a deliberate change of the rig (then look at it)."""
    image = _render_golden(rig)
    if os.environ.get("DTL_REGENERATE_GOLDEN"):
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(GOLDEN, optimize=True)
        pytest.fail(f"regenerated {GOLDEN}; review it and run again without DTL_REGENERATE_GOLDEN")
    golden = np.asarray(Image.open(GOLDEN).convert("RGB")).astype(np.int32)
    diff = np.abs(image.astype(np.int32) - golden)
    assert image.shape == golden.shape == (256, 256, 3)
    assert diff.mean() < 2.0, f"mean abs difference {diff.mean():.2f}/255"
    assert (diff.max(axis=-1) > 32).mean() < 0.01, f"{(diff.max(axis=-1) > 32).mean():.2%} of pixels off by > 32"


def test_golden_comparison_catches_a_different_face(rig):
    golden = np.asarray(Image.open(GOLDEN).convert("RGB")).astype(np.int32)
    with FaceRenderer(rig, 256) as renderer:
        other = renderer.render(np.zeros(NUM_BLENDSHAPES), GOLDEN_POSE * [-1, 1, 1, 1, 1, 1])[0].numpy()
    assert np.abs(other.astype(np.int32) - golden).mean() > 2.0


def _changed(frames: np.ndarray, name: str) -> np.ndarray:
    """Per-pixel change (sum over RGB, 0-765) between the shape at 1 and neutral, below 24 counted as noise."""
    d = np.abs(frames[1 + INDEX[name]] - frames[0]).sum(-1)
    return np.where(d > 24, d, 0)


def _centroid(weights: np.ndarray) -> np.ndarray:
    ys, xs = np.indices(weights.shape)
    return np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()


@pytest.mark.parametrize("name", ARKIT_NAMES)
def test_each_shape_changes_the_image_where_it_should(shape_frames, name):
    frames, marks = shape_frames
    change = _changed(frames, name)
    assert (change > 0).sum() >= 15, f"{name} at 1 changes only {(change > 0).sum()} pixels"
    cx, cy = _centroid(change)
    half = SHAPE_SIZE // 2
    subject_left, subject_right = change[:, half:].sum(), change[:, :half].sum()  # the camera faces the subject
    shifts = ("jawLeft", "jawRight", "mouthLeft", "mouthRight")  # move the whole jaw or mouth: both edges change
    if name.endswith("Left") and name not in shifts:
        assert subject_left > 3 * subject_right, f"{name} changes the subject's right side"
    elif name.endswith("Right") and name not in shifts:
        assert subject_right > 3 * subject_left, f"{name} changes the subject's left side"
    side = "left" if name.endswith("Left") else "right"
    if name.startswith("eye"):
        assert np.hypot(cx - marks[f"eye_{side}"][0], cy - marks[f"eye_{side}"][1]) < 8, (name, cx, cy)
    elif name.startswith("brow"):
        assert cy < min(marks["eye_left"][1], marks["eye_right"][1]) - 4, (name, cy)
    elif name.startswith(("jaw", "mouth", "tongue")):
        assert marks["nose_tip"][1] < cy < marks["chin"][1] and abs(cx - marks["mouth"][0]) < 20, (name, cx, cy)
    elif name == "cheekPuff":
        assert 0.5 < subject_left / subject_right < 2 and marks["nose_tip"][1] - 10 < cy < marks["chin"][1]
    elif name.startswith("cheekSquint"):
        assert marks[f"eye_{side}"][1] < cy < marks["mouth"][1], (name, cy)
    elif name.startswith("noseSneer"):
        assert np.hypot(cx - marks["nose_tip"][0], cy - marks["nose_tip"][1]) < 12, (name, cx, cy)


def test_jaw_open_changes_the_lower_face_and_blink_the_left_eye(shape_frames):
    frames, marks = shape_frames
    jaw, blink = _changed(frames, "jawOpen"), _changed(frames, "eyeBlinkLeft")
    nose_y = int(marks["nose_tip"][1])
    assert jaw[nose_y:].sum() > 0.95 * jaw.sum()
    ex, ey = marks["eye_left"].astype(int)
    assert blink[ey - 10:ey + 10, ex - 12:ex + 12].sum() > 0.95 * blink.sum()
    assert jaw[nose_y:].sum() > 5 * blink.sum()  # jawOpen moves far more than a blink
    for part in ("jaw", "mouth"):  # jawLeft/mouthLeft go to the subject's left: the image's right
        assert _centroid(_changed(frames, f"{part}Left"))[0] > _centroid(_changed(frames, f"{part}Right"))[0] + 1


def test_jaw_open_grows_the_dark_mouth_interior_monotonically(rig):
    levels = np.linspace(0.0, 1.0, 6)
    coeffs = np.zeros((len(levels), NUM_BLENDSHAPES))
    coeffs[:, INDEX["jawOpen"]] = levels
    with FaceRenderer(rig, SHAPE_SIZE) as renderer:
        frames = renderer.render(coeffs).numpy().astype(np.float64)
        mx, my = renderer.project(rig.landmarks["mouth"])[0].astype(int)
    luminance = frames @ np.array([0.299, 0.587, 0.114])
    dark = [(lum[my - 8:my + 24, mx - 18:mx + 18] < 45).sum() for lum in luminance]
    assert dark[0] == 0
    assert all(b > a for a, b in zip(dark, dark[1:])), dark
    assert dark[-1] > 100, dark


@pytest.mark.parametrize("size", [256, 512])
def test_renders_batched_sequences_at_256_and_512(rig, size):
    coeffs = np.zeros((3, NUM_BLENDSHAPES), np.float32)
    coeffs[1, INDEX["jawOpen"]] = 0.8
    poses = np.array([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [30, 10, 0, 0.0, 0.0, 0.0]], float)
    with FaceRenderer(rig, size) as renderer:
        frames = renderer.render(coeffs, poses, chunk=2)
        nose = renderer.project(rig.landmarks["nose_tip"], poses[2])[0]
        eyes = [renderer.project(rig.landmarks[k], poses[2])[0] for k in ("eye_left", "eye_right")]
    assert frames.shape == (3, size, size, 3) and frames.dtype == torch.uint8
    assert not torch.equal(frames[0], frames[1]) and not torch.equal(frames[0], frames[2])
    assert nose[0] > size / 2  # positive yaw turns the face to the subject's left (the image's right)
    background = frames[2, 1, 1].numpy()
    for x, y in eyes + [nose]:
        assert np.abs(frames[2, int(y), int(x)].numpy().astype(int) - background).sum() > 30  # on the face


def test_a_renderer_draws_the_same_after_another_came_and_went(rig):
    coeffs = np.zeros((2, 52), np.float32)
    coeffs[1, INDEX["jawOpen"]] = 0.8
    with FaceRenderer(rig, 64) as renderer:
        before = renderer.render(coeffs).numpy()
        with FaceRenderer(rig, 48) as other:
            other.render(coeffs)
        assert np.array_equal(renderer.render(coeffs).numpy(), before)


def test_render_input_errors(rig):
    with FaceRenderer(rig, 64) as renderer:
        with pytest.raises(RenderError, match="poses"):
            renderer.render(np.zeros((2, NUM_BLENDSHAPES)), np.zeros((3, 6)))
        with pytest.raises(RigError, match="52"):
            renderer.render(np.zeros((2, 40)))
    with pytest.raises(RenderError, match="size"):
        FaceRenderer(rig, 5)


def test_missing_egl_names_the_debian_packages(monkeypatch):
    monkeypatch.setenv("GLCONTEXT_LINUX_LIBEGL", "/nonexistent/libEGL.so.1")
    with pytest.raises(EGLUnavailableError) as error:
        create_context()
    assert EGL_DEBIAN_PACKAGES in str(error.value) and "libEGL" in str(error.value)


# --- video -----------------------------------------------------------------------------------------------

def test_sequence_to_mp4_with_speech_in_sync(rig, speech, tmp_path):
    fps = 25.0
    seconds = sf.info(str(speech)).duration
    frames = int(round(seconds * fps))
    wave = load_audio(speech, 16000)
    loudness = np.array([np.sqrt(np.mean(wave[int(t / fps * 16000):int((t + 1) / fps * 16000)] ** 2))
                         for t in range(frames)])
    coeffs = np.zeros((frames, NUM_BLENDSHAPES), np.float32)
    coeffs[:, INDEX["jawOpen"]] = np.clip(loudness / loudness.max(), 0, 1)
    out = tmp_path / "clip.mp4"
    with FaceRenderer(rig, 128) as renderer:
        rendered = renderer.render(coeffs)
        write_video(out, renderer.iter_render(coeffs, chunk=16), fps, speech)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]  # no temporary left behind

    probe = probe_video(out)
    assert (probe.video_codec, probe.audio_codec, probe.width, probe.fps) == ("h264", "aac", 128, 25.0)
    count, video_seconds = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert count == frames
    assert abs(probe.duration - seconds) <= 1 / fps and abs(video_seconds - seconds) <= 1 / fps
    assert check_video(out, speech, fps) is None

    reader = imageio_ffmpeg.read_frames(str(out))
    next(reader)
    decoded = np.stack([np.frombuffer(f, np.uint8).reshape(128, 128, 3) for f in reader])
    mse = np.mean((decoded.astype(float) - rendered.numpy()) ** 2, axis=(1, 2, 3))
    assert (10 * np.log10(255 ** 2 / mse)).min() > 28  # the frames are the rendered ones, in order

    muxed = load_audio(out, 16000)  # the AAC stream decoded back: same speech, no offset
    assert abs(len(muxed) - len(wave)) < 16000 / fps
    n = min(len(wave), len(muxed))
    lags = np.arange(-400, 401)
    corr = [np.dot(wave[400:n - 400], muxed[400 + lag:n - 400 + lag]) for lag in lags]
    assert abs(lags[int(np.argmax(corr))]) < 16000 / fps / 4  # within a quarter of a frame (10 ms)


def test_video_length_follows_the_audio_and_rejects_a_mismatch(speech, tmp_path):
    fps = 25.0
    frames = int(round(sf.info(str(speech)).duration * fps))
    still = np.full((frames - 2, 64, 64, 3), 90, np.uint8)
    padded = write_video(tmp_path / "padded.mp4", still, fps, speech)
    assert imageio_ffmpeg.count_frames_and_secs(str(padded))[0] == frames
    with pytest.raises(VideoError, match="audio"):
        write_video(tmp_path / "short.mp4", still[: frames // 2], fps, speech)
    assert not (tmp_path / "short.mp4").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["padded.mp4"]
    silent = write_video(tmp_path / "silent.mp4", still[:10], fps)
    assert probe_video(silent).audio_codec is None and imageio_ffmpeg.count_frames_and_secs(str(silent))[0] == 10
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    with pytest.raises(VideoError, match="notes.txt: not a readable media file"):
        probe_video(text)


# --- demo corpus videos ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory) -> Path:
    from datamodules.demo.build import build_demo_corpus

    return build_demo_corpus(tmp_path_factory.mktemp("demo") / "corpus", speakers=2, sentences=1, workers=1,
                             progress=False)


@pytest.mark.slow
def test_demo_videos_are_written_resumably_with_a_face_per_speaker(small_corpus, tmp_path):
    from dtl_foundation.mead import ClipKey
    from datamodules.demo.videos import render_demo_videos

    keys = [ClipKey("M001", "happy", 3, "001"), ClipKey("W002", "happy", 3, "001"),
            ClipKey("W002", "neutral", 1, "001")]
    clips = [k.clip_id for k in keys]
    videos, audios = [k.video_path(small_corpus) for k in keys], [k.audio_path(small_corpus) for k in keys]
    report = render_demo_videos(small_corpus, size=64, clip_ids=clips, progress=False, cache_dir=tmp_path)
    assert (report["rendered"], report["skipped_valid"], report["failed"]) == (3, 0, [])
    assert all(check_video(video, audio, 25.0) is None for video, audio in zip(videos, audios))
    first = []
    for video in videos[:2]:
        reader = imageio_ffmpeg.read_frames(str(video))
        next(reader)
        first.append(np.frombuffer(next(reader), np.uint8).reshape(64, 64, 3).astype(int))
    centre = slice(24, 40)
    assert np.abs(first[0][centre, centre] - first[1][centre, centre]).mean() > 8  # two speakers, two faces

    stamps = [v.stat().st_mtime_ns for v in videos]
    again = render_demo_videos(small_corpus, size=64, clip_ids=clips, progress=False, cache_dir=tmp_path)
    assert (again["rendered"], again["skipped_valid"]) == (0, 3)
    assert [v.stat().st_mtime_ns for v in videos] == stamps
    videos[1].write_bytes(videos[1].read_bytes()[:2000])  # a damaged file is made again
    repaired = render_demo_videos(small_corpus, size=64, clip_ids=clips, progress=False, cache_dir=tmp_path)
    assert (repaired["rendered"], repaired["skipped_valid"]) == (1, 2)
    assert check_video(videos[1], audios[1], 25.0) is None
    assert not list(small_corpus.rglob("*.tmp"))
    with pytest.raises(ValueError, match="no valid clips"):
        render_demo_videos(small_corpus, clip_ids=["X999_happy_level_1_001"], progress=False, cache_dir=tmp_path)


def test_training_after_an_egl_context_does_not_crash():
    # Mesa's EGL and triton (loaded by torch's optimizers) crash the process when triton loads second.
    script = ("import torch\nfrom rendering.gl_renderer import create_context\nctx = create_context()\n"
              "w = torch.nn.Parameter(torch.ones(3))\nopt = torch.optim.Adam([w])\n(w ** 2).sum().backward()\n"
              "opt.step()\nprint('stepped', float(w[0]))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0 and "stepped" in done.stdout, (done.returncode, done.stderr[-2000:])
