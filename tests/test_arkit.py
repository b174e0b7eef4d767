"""ARKit schema: Apple order, groups, reordering by name, the named index orders and their converters."""

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


def test_live_link_order_differs_from_apple_only_in_jaw_and_mouth_sides():
    moved = [(a, b) for a, b in zip(arkit.ARKIT_NAMES, arkit.LIVE_LINK_NAMES) if a != b]
    assert moved == [("jawLeft", "jawRight"), ("jawRight", "jawLeft"), ("mouthLeft", "mouthRight"),
                     ("mouthRight", "mouthLeft")]


@pytest.mark.parametrize("order", list(arkit.ORDERS))
def test_converters_between_orders_are_inverse_and_go_by_name(order):
    rng = np.random.default_rng(3)
    apple = rng.random((6, 52)).astype(np.float32)
    if order == "mediapipe":
        apple[:, arkit.INDEX["tongueOut"]] = 0.0  # MediaPipe has no tongueOut
    converted = arkit.to_order(apple, order)
    names = arkit.ORDERS[order]
    for column, name in enumerate(names):  # each column holds the shape its order names there
        expected = apple[:, arkit.INDEX[name]] if name in arkit.INDEX else np.zeros(6)
        np.testing.assert_array_equal(converted[:, column], expected)
    np.testing.assert_array_equal(arkit.from_order(converted, order), apple)


def test_jaw_left_stays_jaw_left_through_the_live_link_order():
    apple = np.zeros((1, 52), np.float32)
    apple[0, arkit.INDEX["jawLeft"]] = 1.0
    live_link = arkit.to_order(apple, "livelink")
    assert arkit.LIVE_LINK_NAMES[int(np.argmax(live_link))] == "jawLeft"
    assert int(np.argmax(live_link)) == arkit.INDEX["jawRight"]  # by index it is Apple's jawRight: never mix them
    assert int(np.argmax(arkit.from_order(live_link, "livelink"))) == arkit.INDEX["jawLeft"]


def test_unknown_order_is_named():
    with pytest.raises(arkit.BlendshapeNameError, match="CORPUS.json: unknown ARKit index order 'arkit'"):
        arkit.from_order(np.zeros((1, 52)), "arkit", source="CORPUS.json")
