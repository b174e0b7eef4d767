"""Blendshape windows: padding masks, style clips of the same speaker and emotion, determinism of evaluation."""

import numpy as np
import torch

from datamodules.blendshape_dataset import BlendshapeWindowDataset, Clip
from dtl_foundation.mead import EMOTION_INDEX


def make_clips():
    rng = np.random.default_rng(0)
    clips = []
    for speaker in ("M001", "W002"):
        for emotion, level in (("happy", 3), ("sad", 1), ("happy", 1)):
            for sentence in ("001", "002", "003"):
                frames = int(rng.integers(40, 90))
                clips.append(Clip(f"{speaker}_{emotion}_level_{level}_{sentence}", speaker, emotion, level, sentence,
                                  rng.normal(size=(frames, 8)).astype(np.float32),
                                  rng.random((frames, 52)).astype(np.float32)))
    return clips


def test_evaluation_windows_tile_every_frame_with_masks():
    clips = make_clips()
    ds = BlendshapeWindowDataset(clips, ["M001", "W002"], window=32, style_frames=16, train=False)
    covered = {i: np.zeros(len(c.blendshapes), bool) for i, c in enumerate(clips)}
    for k in range(len(ds)):
        item = ds[k]
        i, start = int(item["clip_index"]), int(item["start"])
        n = int(item["mask"].sum())
        covered[i][start:start + n] = True
        clip = clips[i]
        np.testing.assert_array_equal(item["blendshapes"][:n].numpy(), clip.blendshapes[start:start + n])
        np.testing.assert_array_equal(item["audio"][:n].numpy(), clip.audio[start:start + n])
        assert torch.all(item["blendshapes"][n:] == 0) and not item["mask"][n:].any()
        np.testing.assert_array_equal(item["init"].numpy(), clip.blendshapes[start])
        assert int(item["emotion"]) == EMOTION_INDEX[clip.emotion] and int(item["level"]) == clip.level
    assert all(c.all() for c in covered.values())


def test_style_clip_is_same_speaker_and_emotion_other_sentence():
    clips = make_clips()
    ds = BlendshapeWindowDataset(clips, ["M001", "W002"], window=32, style_frames=16, train=True)
    torch.manual_seed(0)
    for k in range(len(ds)):
        item = ds[k]
        clip = clips[int(item["clip_index"])]
        style = item["style"][: int(item["style_mask"].sum())].numpy()
        matches = [c for c in clips if any(np.array_equal(style, c.blendshapes[s:s + len(style)])
                                           for s in range(len(c.blendshapes) - len(style) + 1))]
        assert matches, "style window is not a window of any clip"
        assert all(m.speaker == clip.speaker and m.emotion == clip.emotion and m.level == clip.level
                   and m.sentence != clip.sentence for m in matches)


def test_evaluation_is_deterministic_and_training_is_seeded():
    clips = make_clips()
    a = BlendshapeWindowDataset(clips, ["M001", "W002"], window=32, style_frames=16, train=False)
    b = BlendshapeWindowDataset(clips, ["M001", "W002"], window=32, style_frames=16, train=False)
    for k in range(len(a)):
        for key, value in a[k].items():
            assert torch.equal(value, b[k][key]), key
    train = BlendshapeWindowDataset(clips, ["M001", "W002"], window=32, style_frames=16, train=True)
    torch.manual_seed(3)
    first = [train[k]["start"].item() for k in range(len(train))]
    torch.manual_seed(3)
    assert first == [train[k]["start"].item() for k in range(len(train))]
    assert len(set(first)) > 1

