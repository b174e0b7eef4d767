"""Left stays left: a track with only jawLeft raised comes back as jawLeft through the Live Link CSV (write, read),
a `.npy` in the app's column order in a corpus that declares it, and the rig render, where the jaw moves to the
avatar's left (the image's right: the camera faces the avatar)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from datamodules.corpus import scan_corpus
from datamodules.tracks import load_track
from dtl_foundation import arkit
from dtl_foundation.arkit_live_link import LiveLinkTrack, read_live_link_csv, write_live_link_csv
from rendering.default_rig import default_rig
from rendering.gl_renderer import FaceRenderer

SIZE = 128


def jaw_left_track(frames: int = 25) -> np.ndarray:
    track = np.zeros((frames, 52), np.float32)
    track[:, arkit.INDEX["jawLeft"]] = 1.0
    return track


def through_csv_and_live_link_npy(track: np.ndarray, root, *, declare: bool) -> np.ndarray:
    """CSV written and read by name, saved as a .npy in Live Link column order, scanned and loaded as training does."""
    write_live_link_csv(root / "take.csv", LiveLinkTrack(track, fps=25.0))
    header = (root / "take.csv").read_text().splitlines()[0].split(",")
    row = (root / "take.csv").read_text().splitlines()[1].split(",")
    assert row[header.index("JawLeft")] == "1.0000000000" and row[header.index("JawRight")] == "0.0000000000"
    from_csv = read_live_link_csv(root / "take.csv", fps=25.0).blendshapes
    npy = root / "corpus" / "M001" / "arkit" / "neutral" / "level_1" / "001.npy"
    npy.parent.mkdir(parents=True)
    np.save(npy, arkit.to_order(from_csv, "livelink"))
    wav = root / "corpus" / "M001" / "audio" / "neutral" / "level_1" / "001.wav"
    wav.parent.mkdir(parents=True)
    import soundfile as sf
    sf.write(wav, 0.1 * np.sin(np.arange(16000) / 10.0).astype(np.float32), 16000)
    (root / "corpus" / "CORPUS.json").write_text(json.dumps({"arkit_order": "livelink"} if declare else {}))
    manifest = scan_corpus(root / "corpus", val_speakers=0, test_speakers=0, progress=False)
    return load_track(manifest.records[0].track_path, npy_fps=25.0, npy_order=manifest.arkit_order)[0]


def jaw_shift_px(track_row: np.ndarray, renderer: FaceRenderer) -> float:
    """How far (image x, pixels) the rendered face's lower half moves from neutral: + is the image's right."""
    frames = renderer.render(np.stack([np.zeros(52, np.float32), track_row])).numpy().astype(np.float32)
    lower = frames[:, SIZE // 2:].mean(axis=-1)
    xs = np.arange(SIZE)
    weight = [np.clip(f - f.min(), 0, None) for f in lower]  # the lit face against the dark background
    centre = [(w * xs).sum() / w.sum() for w in weight]
    return float(centre[1] - centre[0])


@pytest.fixture(scope="module")
def renderer(tmp_path_factory):
    with FaceRenderer(default_rig(cache_dir=tmp_path_factory.mktemp("rigs")), SIZE) as r:
        yield r


def test_jaw_left_comes_back_as_jaw_left_and_moves_to_the_avatars_left(tmp_path, renderer):
    back = through_csv_and_live_link_npy(jaw_left_track(), tmp_path, declare=True)
    np.testing.assert_array_equal(back, jaw_left_track())
    assert jaw_shift_px(back[0], renderer) > 0.5  # to the image's right: the avatar's left


def test_undeclared_the_same_files_would_move_the_jaw_to_the_avatars_right(tmp_path, renderer):
    """The safeguard removed (the corpus does not declare the app's order): the jaw goes the wrong way."""
    back = through_csv_and_live_link_npy(jaw_left_track(), tmp_path, declare=False)
    assert back[0, arkit.INDEX["jawRight"]] == 1.0 and back[0, arkit.INDEX["jawLeft"]] == 0.0
    assert jaw_shift_px(back[0], renderer) < -0.5
