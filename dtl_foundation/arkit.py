"""The 52 ARKit blendshapes: names in Apple order, named groups, the index orders other tools use and converters
between them (the Live Link Face CSV itself is in arkit_live_link)."""

from __future__ import annotations

import os

import numpy as np

# Apple order: the order of ARFaceAnchor.BlendShapeLocation in Apple's ARKit documentation. The project's one index
# order for (T, 52) arrays, checkpoints and `.npy` tracks (NPY_ORDER; a corpus may declare another, see ORDERS).
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)
NUM_BLENDSHAPES = len(ARKIT_NAMES)
assert NUM_BLENDSHAPES == 52
INDEX: dict[str, int] = {name: i for i, name in enumerate(ARKIT_NAMES)}

# EmoTalk and MediaPipe list the shapes alphabetically; MediaPipe prepends `_neutral` and has no tongueOut.
ALPHABETICAL_NAMES: tuple[str, ...] = tuple(sorted(ARKIT_NAMES))
MEDIAPIPE_NAMES: tuple[str, ...] = ("_neutral",) + tuple(n for n in ALPHABETICAL_NAMES if n != "tongueOut")


def _swapped(names: tuple[str, ...], *pairs: tuple[str, str]) -> tuple[str, ...]:
    swap = {a: b for pair in pairs for a, b in (pair, pair[::-1])}
    return tuple(swap.get(n, n) for n in names)


# The Live Link Face app's column order: Apple's, but JawRight before JawLeft and MouthRight before MouthLeft.
# Tools that turn its CSVs into arrays by column index keep this order.
LIVE_LINK_NAMES: tuple[str, ...] = _swapped(ARKIT_NAMES, ("jawLeft", "jawRight"), ("mouthLeft", "mouthRight"))

ORDERS: dict[str, tuple[str, ...]] = {
    "apple": ARKIT_NAMES,
    "livelink": LIVE_LINK_NAMES,
    "alphabetical": ALPHABETICAL_NAMES,  # EmoTalk
    "mediapipe": MEDIAPIPE_NAMES,  # FaceLandmarker's 52 scores: `_neutral` first, no tongueOut
}
NPY_ORDER = "apple"
"""The order of a `.npy` track whose corpus does not state one (CORPUS.json's "arkit_order")."""


def _group(prefix: str) -> tuple[str, ...]:
    return tuple(n for n in ARKIT_NAMES if n.startswith(prefix))


GROUPS: dict[str, tuple[str, ...]] = {
    "eyes": _group("eye"),
    "jaw": _group("jaw"),
    "mouth_only": _group("mouth"),
    "mouth": _group("jaw") + _group("mouth"),  # the lip-refinement set: 4 jaw + 23 mouth
    "brows": _group("brow"),
    "cheeks": _group("cheek"),
    "nose": _group("nose"),
    "tongue": _group("tongue"),
}
GROUPS["upper_face"] = GROUPS["eyes"] + GROUPS["brows"] + GROUPS["cheeks"] + GROUPS["nose"]
assert len(GROUPS["mouth"]) == 27


def indices(group_or_names: str | list[str] | tuple[str, ...]) -> list[int]:
    """Positions (in Apple order) of a named group or of a list of blendshape names."""
    names = GROUPS[group_or_names] if isinstance(group_or_names, str) else group_or_names
    return [INDEX[n] for n in names]


MOUTH_INDICES = indices("mouth")


class BlendshapeNameError(ValueError):
    """Raised when a track names blendshapes that ARKit does not have, or lacks some that it needs."""


def reorder(values: np.ndarray, names: list[str] | tuple[str, ...], *, fill_missing: float | None = None,
            source: str | os.PathLike | None = None) -> np.ndarray:
    """Map a (..., len(names)) array in any order to (..., 52) in Apple order, by name.

    Names outside ARKit (such as MediaPipe's `_neutral`) are dropped; a missing ARKit name is an error
    unless `fill_missing` gives its value (MediaPipe has no tongueOut).
    """
    where = f"{source}: " if source else ""
    values = np.asarray(values)
    if values.shape[-1] != len(names):
        raise BlendshapeNameError(f"{where}{values.shape[-1]} columns but {len(names)} names")
    position = {n: i for i, n in enumerate(names)}
    unknown = [n for n in names if n not in INDEX and n != "_neutral"]
    if unknown:
        raise BlendshapeNameError(f"{where}unknown blendshape names {unknown}")
    missing = [n for n in ARKIT_NAMES if n not in position]
    if missing and fill_missing is None:
        raise BlendshapeNameError(f"{where}missing blendshapes {missing}")
    out = np.full(values.shape[:-1] + (NUM_BLENDSHAPES,), fill_missing if missing else 0.0, dtype=np.float32)
    for i, name in enumerate(ARKIT_NAMES):
        if name in position:
            out[..., i] = values[..., position[name]]
    return out


def order_names(order: str, *, source: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The 52 names of a named index order (one of ORDERS)."""
    if order not in ORDERS:
        where = f"{source}: " if source else ""
        raise BlendshapeNameError(f"{where}unknown ARKit index order {order!r}; known orders: {', '.join(ORDERS)}")
    return ORDERS[order]


def from_order(values: np.ndarray, order: str, *, source: str | os.PathLike | None = None) -> np.ndarray:
    """(..., 52) columns in a named order -> Apple order (MediaPipe's tongueOut, which it lacks, = 0)."""
    return reorder(values, order_names(order, source=source), fill_missing=0.0 if order == "mediapipe" else None,
                   source=source)


def to_order(values: np.ndarray, order: str) -> np.ndarray:
    """(..., 52) columns in Apple order -> a named order (MediaPipe's `_neutral`, which ARKit lacks, = 0)."""
    values = np.asarray(values)
    if values.shape[-1] != NUM_BLENDSHAPES:
        raise BlendshapeNameError(f"{values.shape[-1]} columns; Apple order has {NUM_BLENDSHAPES}")
    out = np.zeros(values.shape, dtype=np.float32)
    for i, name in enumerate(order_names(order)):
        if name in INDEX:
            out[..., i] = values[..., INDEX[name]]
    return out


def from_alphabetical(values: np.ndarray) -> np.ndarray:
    """EmoTalk-style alphabetical order -> Apple order."""
    return from_order(values, "alphabetical")


def from_mediapipe(values: np.ndarray) -> np.ndarray:
    """MediaPipe FaceLandmarker order (`_neutral` first, no tongueOut) -> Apple order, tongueOut = 0."""
    return from_order(values, "mediapipe")
