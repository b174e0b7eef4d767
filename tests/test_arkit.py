"""ARKit schema: Apple order, groups, reordering by name, the named index orders and their converters."""

import json

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


def test_orders_and_names_read_from_files_work_like_the_literals():
    # CORPUS.json's "arkit_order" and a tool's list of names are parsed strings: equal to the module's literals but
    # other objects, so anything comparing them by identity would take the wrong branch.
    parsed = json.loads('{"arkit_order": "mediapipe", "names": ["_neutral"]}')
    literal = "mediapipe"
    assert parsed["arkit_order"] == literal and parsed["arkit_order"] is not literal
    mediapipe = np.random.default_rng(5).random((4, 52)).astype(np.float32)
    np.testing.assert_array_equal(arkit.from_order(mediapipe, parsed["arkit_order"]), arkit.from_mediapipe(mediapipe))
    names = parsed["names"] + list(arkit.MEDIAPIPE_NAMES[1:])
    np.testing.assert_array_equal(arkit.reorder(mediapipe, names, fill_missing=0.0), arkit.from_mediapipe(mediapipe))


def test_only_mediapipes_neutral_is_dropped_whatever_an_unknown_name_looks_like():
    # `_neutral` sorts after capitals and digits: a capitalised Live Link spelling is unknown, not dropped.
    for stranger in ("JawClench", "JawOpen", "2ndJaw", "zygomatic"):
        with pytest.raises(arkit.BlendshapeNameError, match=rf"take.csv: unknown blendshape names \['{stranger}'\]"):
            arkit.reorder(np.zeros((1, 53)), list(arkit.ARKIT_NAMES) + [stranger], source="take.csv")


def test_missing_shapes_get_the_fill_value_the_others_their_own():
    names = [n for n in arkit.ARKIT_NAMES if n not in ("tongueOut", "cheekPuff")]
    values = np.random.default_rng(6).random((3, 50)).astype(np.float32)
    out = arkit.reorder(values, names, fill_missing=0.25)
    np.testing.assert_array_equal(out[:, [arkit.INDEX["tongueOut"], arkit.INDEX["cheekPuff"]]], np.full((3, 2), 0.25))
    np.testing.assert_array_equal(out[:, [arkit.INDEX[n] for n in names]], values)


def test_converters_take_batches_and_count_columns_on_the_last_axis():
    batch = np.random.default_rng(7).random((2, 5, 52)).astype(np.float32)
    for order in ("livelink", "alphabetical"):
        converted = arkit.to_order(batch, order)
        assert converted.shape == (2, 5, 52)
        np.testing.assert_array_equal(arkit.from_order(converted, order), batch)
    with pytest.raises(arkit.BlendshapeNameError, match="^51 columns but 52 names"):
        arkit.reorder(np.zeros((2, 5, 51)), arkit.ARKIT_NAMES)
    with pytest.raises(arkit.BlendshapeNameError, match="^53 columns but 52 names"):
        arkit.reorder(np.zeros((2, 5, 53)), arkit.ARKIT_NAMES)
    for columns in (51, 53):
        with pytest.raises(arkit.BlendshapeNameError, match=f"^{columns} columns; Apple order has 52"):
            arkit.to_order(np.zeros((2, 5, columns)), "livelink")


def test_fill_value_and_source_are_keyword_only():
    # Positionally, a source path could be taken for a fill value: both must be named.
    with pytest.raises(TypeError):
        arkit.reorder(np.zeros((1, 52)), arkit.ARKIT_NAMES, 0.0)
    with pytest.raises(TypeError):
        arkit.order_names("apple", "CORPUS.json")
    with pytest.raises(TypeError):
        arkit.from_order(np.zeros((1, 52)), "apple", "CORPUS.json")
