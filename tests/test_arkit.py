"""ARKit schema: order, groups, reordering by name, Live Link Face CSV round trip."""

import numpy as np
import pytest

from dtl_foundation import arkit


def test_apple_order_and_groups():
    assert len(arkit.ARKIT_NAMES) == 52 and len(set(arkit.ARKIT_NAMES)) == 52
    assert arkit.ARKIT_NAMES[0] == "eyeBlinkLeft" and arkit.ARKIT_NAMES[17] == "jawOpen"
    assert arkit.ARKIT_NAMES[-1] == "tongueOut"
    assert len(arkit.GROUPS["jaw"]) == 4 and len(arkit.GROUPS["mouth_only"]) == 23
    assert len(arkit.MOUTH_INDICES) == 27
    assert arkit.GROUPS["eyes"] == tuple(n for n in arkit.ARKIT_NAMES if n.startswith("eye"))
    grouped = set().union(*(arkit.GROUPS[g] for g in ("eyes", "mouth", "brows", "cheeks", "nose", "tongue")))
    assert grouped == set(arkit.ARKIT_NAMES)


def test_alphabetical_and_mediapipe_orders_map_by_name():
    rng = np.random.default_rng(0)
    apple = rng.random((5, 52)).astype(np.float32)
    alpha = apple[:, [arkit.INDEX[n] for n in arkit.ALPHABETICAL_NAMES]]
    np.testing.assert_array_equal(arkit.from_alphabetical(alpha), apple)

    mediapipe = np.concatenate([rng.random((5, 1)), apple[:, [arkit.INDEX[n] for n in arkit.MEDIAPIPE_NAMES[1:]]]], 1)
    assert mediapipe.shape == (5, 52)  # _neutral added, tongueOut dropped
    back = arkit.from_mediapipe(mediapipe)
    expected = apple.copy()
    expected[:, arkit.INDEX["tongueOut"]] = 0.0
    np.testing.assert_allclose(back, expected)


def test_reorder_rejects_unknown_and_missing_names():
    names = list(arkit.ARKIT_NAMES)
    with pytest.raises(arkit.BlendshapeNameError, match="unknown blendshape names.*jawClench"):
        arkit.reorder(np.zeros((1, 52)), names[:-1] + ["jawClench"], source="take.csv")
    with pytest.raises(arkit.BlendshapeNameError, match="missing blendshapes.*tongueOut"):
        arkit.reorder(np.zeros((1, 51)), names[:-1])
    with pytest.raises(arkit.BlendshapeNameError, match="51 columns but 52 names"):
        arkit.reorder(np.zeros((1, 51)), names)


def test_live_link_csv_round_trip_with_pose(tmp_path):
    rng = np.random.default_rng(1)
    track = arkit.LiveLinkTrack(blendshapes=rng.random((90, 52)), fps=60.0,
                                pose=rng.uniform(-0.3, 0.3, (90, 9)).astype(np.float32))
    path = tmp_path / "take.csv"
    arkit.write_live_link_csv(path, track)
    header = path.read_text().splitlines()[0].split(",")
    assert header[:3] == ["Timecode", "BlendShapeCount", "EyeBlinkLeft"]
    assert header[-9:] == list(arkit.POSE_NAMES)
    back = arkit.read_live_link_csv(path, fps=60.0)
    np.testing.assert_allclose(back.blendshapes, track.blendshapes, atol=1e-6)
    np.testing.assert_allclose(back.pose, track.pose, atol=1e-6)
    seconds = [arkit.timecode_to_seconds(tc, 60.0) for tc in back.timecodes]
    np.testing.assert_allclose(seconds, np.arange(90) / 60.0, atol=1e-3)


def test_live_link_csv_columns_in_any_order(tmp_path):
    """A CSV whose blendshape columns are shuffled (other exporters) still reads by name."""
    rng = np.random.default_rng(2)
    values = rng.random((4, 52)).astype(np.float32)
    order = rng.permutation(52)
    cols = [arkit.LLF_BLENDSHAPE_COLUMNS[i] for i in order]
    lines = [",".join(["Timecode", "BlendShapeCount"] + cols)]
    lines += [",".join([arkit.frames_to_timecode(t, 30), "52"] + [f"{v:.6f}" for v in values[t, order]])
              for t in range(4)]
    path = tmp_path / "shuffled.csv"
    path.write_text("\n".join(lines) + "\n")
    np.testing.assert_allclose(arkit.read_live_link_csv(path, fps=30).blendshapes, values, atol=1e-6)


def test_malformed_csv_names_the_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("Timecode,BlendShapeCount," + ",".join(arkit.LLF_BLENDSHAPE_COLUMNS) + "\n00:00:00:00.000,52,abc\n")
    with pytest.raises(arkit.BlendshapeNameError, match="bad.csv"):
        arkit.read_live_link_csv(path)
