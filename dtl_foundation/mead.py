"""The MEAD corpus layout: emotions, intensity levels, and where a clip's files live."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

EMOTIONS: tuple[str, ...] = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
EMOTION_INDEX: dict[str, int] = {e: i for i, e in enumerate(EMOTIONS)}
NUM_EMOTIONS = len(EMOTIONS)
LEVELS: tuple[int, ...] = (1, 2, 3)
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".m4a", ".mp3")
TRACK_EXTENSIONS: tuple[str, ...] = (".npy", ".csv")
VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4",)
CORPUS_INFO_FILE = "CORPUS.json"  # optional corpus-level facts; the demo corpus marks itself synthetic here

_LEVEL_DIR = re.compile(r"^level_(\d+)$")


def levels_of(emotion: str) -> tuple[int, ...]:
    """MEAD records neutral at level 1 only, every other emotion at levels 1-3."""
    return (1,) if emotion == "neutral" else LEVELS


def parse_level_dir(name: str) -> int | None:
    match = _LEVEL_DIR.match(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class ClipKey:
    """One sentence of one speaker at one emotion and level."""

    speaker: str
    emotion: str
    level: int
    sentence: str

    @property
    def clip_id(self) -> str:
        return f"{self.speaker}_{self.emotion}_level_{self.level}_{self.sentence}"

    def audio_path(self, root: Path, ext: str = ".wav") -> Path:
        return root / self.speaker / "audio" / self.emotion / f"level_{self.level}" / f"{self.sentence}{ext}"

    def track_path(self, root: Path, ext: str = ".npy") -> Path:
        return root / self.speaker / "arkit" / self.emotion / f"level_{self.level}" / f"{self.sentence}{ext}"

    def head_pose_path(self, root: Path) -> Path:
        """(T, 6) yaw, pitch, roll (degrees), tx, ty, tz (metres) per frame, rendering.gl_renderer's convention."""
        return root / self.speaker / "head_pose" / self.emotion / f"level_{self.level}" / f"{self.sentence}.npy"

    def video_path(self, root: Path, view: str = "front", ext: str = ".mp4") -> Path:
        return root / self.speaker / "video" / view / self.emotion / f"level_{self.level}" / f"{self.sentence}{ext}"
