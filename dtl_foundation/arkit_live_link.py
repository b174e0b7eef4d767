"""The Live Link Face CSV as the iPhone app writes it (header, column order, count column, number and timecode
format), written from and read into Apple-order tracks; the reader goes by column name, so any order and both
spellings of the count column read alike."""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dtl_foundation.arkit import LIVE_LINK_NAMES, BlendshapeNameError, reorder, to_order
from dtl_foundation.atomic_files import atomic_write_text

POSE_NAMES: tuple[str, ...] = (
    "HeadYaw", "HeadPitch", "HeadRoll",
    "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)
# Real captures spell the count column "BlendShapeCount" (tests/data/live_link/README.md names them); some tools
# write "BlendshapeCount". The reader takes either.
COUNT_COLUMN = "BlendShapeCount"
BLENDSHAPE_COUNT = 61  # what the app writes in that column: its 52 shapes and the 9 head and eye angles
VALUE_FORMAT = "{:.10f}"  # the app's: ten decimals, "0.0000000000" for zero


def _llf_name(name: str) -> str:
    return name[0].upper() + name[1:]


LLF_BLENDSHAPE_COLUMNS = tuple(_llf_name(n) for n in LIVE_LINK_NAMES)
LLF_HEADER = ("Timecode", COUNT_COLUMN) + LLF_BLENDSHAPE_COLUMNS + POSE_NAMES
assert len(LLF_HEADER) == 63

# Frame rates a pipeline uses (film, PAL, NTSC, high rate); timecodes count frames at the nominal (rounded) rate,
# as non-drop-frame timecode does, so 29.97 fps labels 30 frames a timecode second.
FRAME_RATES: tuple[float, ...] = (23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94, 60.0)


def timecode_rate(fps: float) -> int:
    """Frames a timecode second counts at `fps`: the rate itself, or 24/30/60 for the NTSC rates 23.976/29.97/59.94."""
    nominal = round(fps) if math.isfinite(fps) else 0  # round() raises on NaN and inf: refuse them below instead
    if not fps > 0 or nominal < 1 or abs(fps - nominal) > 0.002 * fps:
        raise ValueError(f"no timecode for {fps:g} fps: use a whole rate or an NTSC one (23.976, 29.97, 59.94)")
    return nominal


def frames_to_timecode(frame: int, fps: float) -> str:
    """Live Link Face timecode `HH:MM:SS:FF.mmm` of frame `frame` of a take that starts at 00:00:00:00 (.mmm: the
    subframe in thousandths, 000 for whole frames)."""
    base = timecode_rate(fps)
    seconds, ff = divmod(int(frame), base)
    minutes, ss = divmod(seconds, 60)
    hh, mm = divmod(minutes, 60)
    return f"{hh:02d}:{mm:02d}:{ss:02d}:{ff:02d}.000"


def timecode_to_frames(timecode: str, fps: float) -> float:
    """The frame count (with subframe) that a `HH:MM:SS:FF[.mmm]` timecode labels at `fps`."""
    try:
        hh, mm, ss, ff = timecode.strip().split(":")
        return ((int(hh) * 60 + int(mm)) * 60 + int(ss)) * timecode_rate(fps) + float(ff)
    except ValueError as e:
        raise ValueError(f"bad timecode {timecode!r} (expected HH:MM:SS:FF.mmm)") from e


def timecode_to_seconds(timecode: str, fps: float) -> float:
    return timecode_to_frames(timecode, fps) / fps


def sampled_rate(timecodes: list[str], stated_fps: float) -> float:
    """The rate a take was recorded at: `stated_fps`, unless its timecodes count another number of rows a second.

    The app records at 30 or 60 fps whatever its timecode rate, so a 30 fps take against a 60 fps timecode steps
    two frames a row; counting the rows of each whole timecode second (the median over the take) tells them apart
    without knowing the timecode's rate. Takes without a whole second, or whose timecodes are not HH:MM:SS:FF, and
    counts within 0.5 % of `stated_fps` (29.97 counts 30 a timecode second) keep `stated_fps`."""
    seconds = [tc.strip().split(":")[:3] for tc in timecodes]
    if not all(len(s) == 3 and all(part.isdigit() for part in s) for s in seconds):
        return stated_fps
    starts = [i for i in range(1, len(seconds)) if seconds[i] != seconds[i - 1]]
    if len(starts) < 2:
        return stated_fps
    counted = float(np.median(np.diff(starts)))
    return stated_fps if abs(counted - stated_fps) <= 0.005 * stated_fps else counted


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
    """Write the take as the app does (MetaHuman/Unreal, Blender and Maya importers read it), atomically."""
    columns = to_order(track.blendshapes, "livelink")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LLF_HEADER)
    for tc, bs, pose in zip(track.timecodes, columns, track.pose):
        writer.writerow([tc, BLENDSHAPE_COUNT] + [VALUE_FORMAT.format(v) for v in bs]
                        + [VALUE_FORMAT.format(v) for v in pose])
    atomic_write_text(path, buf.getvalue())


def _is_count_column(name: str) -> bool:
    return name.lower() == COUNT_COLUMN.lower()


def read_live_link_csv(path: str | os.PathLike, fps: float = 60.0) -> LiveLinkTrack:
    """Read a Live Link Face CSV by column name; `fps` interprets the frame field of the timecodes."""
    path = Path(path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise BlendshapeNameError(f"{path}: empty CSV")
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if r]
    bs_cols = [h for h in header if h != "Timecode" and not _is_count_column(h) and h not in POSE_NAMES]
    names = [h[0].lower() + h[1:] for h in bs_cols if h]
    if len(names) != len(bs_cols):
        raise BlendshapeNameError(f"{path}: a header column has no name")
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
