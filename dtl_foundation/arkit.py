"""The 52 ARKit blendshapes: names in Apple order, named groups, reordering by name, Live Link Face CSV."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dtl_foundation.atomic_files import atomic_write_text

# Apple / Live Link Face order (the order of a Live Link Face CSV header).
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


def from_alphabetical(values: np.ndarray) -> np.ndarray:
    """EmoTalk-style alphabetical order -> Apple order."""
    return reorder(values, ALPHABETICAL_NAMES)


def from_mediapipe(values: np.ndarray) -> np.ndarray:
    """MediaPipe FaceLandmarker order (`_neutral` first, no tongueOut) -> Apple order, tongueOut = 0."""
    return reorder(values, MEDIAPIPE_NAMES, fill_missing=0.0)


# --- Live Link Face CSV -------------------------------------------------------------------------------
# Header: Timecode, BlendShapeCount, the 52 names (capitalised first letter), then head and eye angles.
POSE_NAMES: tuple[str, ...] = (
    "HeadYaw", "HeadPitch", "HeadRoll",
    "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)


def _llf_name(name: str) -> str:
    return name[0].upper() + name[1:]


LLF_BLENDSHAPE_COLUMNS = tuple(_llf_name(n) for n in ARKIT_NAMES)
LLF_HEADER = ("Timecode", "BlendShapeCount") + LLF_BLENDSHAPE_COLUMNS + POSE_NAMES


def frames_to_timecode(frame: int, fps: float) -> str:
    """Live Link Face timecode `HH:MM:SS:FF.mmm` for a frame index at `fps`."""
    seconds = frame / fps
    whole = int(seconds)
    hh, rem = divmod(whole, 3600)
    mm, ss = divmod(rem, 60)
    ff_float = (seconds - whole) * fps
    ff = int(round(ff_float, 6))
    sub = ff_float - ff
    return f"{hh:02d}:{mm:02d}:{ss:02d}:{ff:02d}.{int(round(sub * 1000)) % 1000:03d}"


def timecode_to_seconds(timecode: str, fps: float) -> float:
    hh, mm, ss, ff = timecode.split(":")
    return int(hh) * 3600 + int(mm) * 60 + int(ss) + float(ff) / fps


@dataclass
class LiveLinkTrack:
    """A Live Link Face take: (T, 52) blendshapes in Apple order, (T, 9) head/eye angles, and its fps."""

    blendshapes: np.ndarray
    fps: float
    pose: np.ndarray = field(default=None)  # type: ignore[assignment]
    timecodes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.blendshapes = np.asarray(self.blendshapes, dtype=np.float32)
        if self.pose is None:
            self.pose = np.zeros((len(self.blendshapes), len(POSE_NAMES)), dtype=np.float32)
        if not self.timecodes:
            self.timecodes = [frames_to_timecode(i, self.fps) for i in range(len(self.blendshapes))]


def write_live_link_csv(path: str | os.PathLike, track: LiveLinkTrack) -> None:
    """Write a Live Link Face CSV (importable by MetaHuman/Unreal and Blender add-ons), atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LLF_HEADER)
    for tc, bs, pose in zip(track.timecodes, track.blendshapes, track.pose):
        writer.writerow([tc, NUM_BLENDSHAPES] + [f"{v:.6f}" for v in bs] + [f"{v:.6f}" for v in pose])
    atomic_write_text(path, buf.getvalue())


def read_live_link_csv(path: str | os.PathLike, fps: float = 60.0) -> LiveLinkTrack:
    """Read a Live Link Face CSV by column name; `fps` interprets the frame field of the timecodes."""
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise BlendshapeNameError(f"{path}: empty CSV")
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if r]
    bs_cols = [h for h in header if h not in ("Timecode", "BlendShapeCount") and h not in POSE_NAMES]
    names = [h[0].lower() + h[1:] for h in bs_cols]
    col = {h: i for i, h in enumerate(header)}
    try:
        raw = np.array([[float(r[col[h]]) for h in bs_cols] for r in body], dtype=np.float32)
        raw = raw.reshape(len(body), len(bs_cols))
        pose = np.array([[float(r[col[h]]) if h in col else 0.0 for h in POSE_NAMES] for r in body],
                        dtype=np.float32).reshape(len(body), len(POSE_NAMES))
    except (ValueError, IndexError) as e:
        raise BlendshapeNameError(f"{path}: malformed row ({e})") from e
    blendshapes = reorder(raw, names, source=path)
    timecodes = [r[col["Timecode"]] for r in body] if "Timecode" in col else []
    return LiveLinkTrack(blendshapes=blendshapes, fps=fps, pose=pose, timecodes=timecodes)
