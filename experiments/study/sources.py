"""The videos a study compares: one folder per method (an evaluation folder, a run directory or any folder of
MP4s), matched by clip name; a clip's intended emotion read from its name (MEAD's vocabulary)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from datamodules.mead import EMOTIONS

VIDEO_SUFFIX = ".mp4"
# `dtl study create` writes its attention-check copies and `dtl eval` its reports beside the videos: never inputs
SKIPPED_DIRS = ("attention", "wandb")


class StudySourceError(ValueError):
    """A method folder that cannot be used; the message names the folder and the problem."""


@dataclass(frozen=True)
class MethodVideos:
    name: str
    folder: Path
    videos: dict[str, Path]  # clip name -> video file


def parse_method_argument(argument: str) -> tuple[str | None, Path]:
    """"NAME=FOLDER" or "FOLDER" (the name is then the folder's)."""
    name, sep, folder = argument.partition("=")
    if sep and name and "/" not in name:
        return name, Path(folder)
    return None, Path(argument)


def video_folder(folder: Path) -> Path:
    """Where a method's videos are: an evaluation folder's generated videos (its metrics.json says where), a
    `dtl eval --checkpoint` folder's videos/, else the folder itself."""
    if not folder.is_dir():
        raise StudySourceError(f"{folder}: no such folder")
    metrics = folder / "metrics.json"
    if metrics.is_file():
        try:
            generated = json.loads(metrics.read_text()).get("generated")
        except json.JSONDecodeError as e:
            raise StudySourceError(f"{metrics}: not valid JSON ({e})") from None
        if generated and Path(generated).is_dir():
            return Path(generated)
    if (folder / "videos").is_dir():
        return folder / "videos"
    return folder


def clip_name(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def method_videos(argument: str) -> MethodVideos:
    name, folder = parse_method_argument(argument)
    root = video_folder(folder)
    videos = {clip_name(p, root): p.resolve() for p in sorted(root.rglob(f"*{VIDEO_SUFFIX}"))
              if p.is_file() and not any(part in SKIPPED_DIRS or part.startswith(".") for part in
                                         p.relative_to(root).parts[:-1])}
    if not videos:
        raise StudySourceError(f"{root}: no {VIDEO_SUFFIX} videos in this folder or below")
    return MethodVideos(name or folder.resolve().name, folder.resolve(), videos)


def common_clips(methods: list[MethodVideos]) -> list[str]:
    """The clip names every method has, in sorted order; a clip one method lacks is an error naming it."""
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise StudySourceError(f"two methods have the same name ({', '.join(names)}): name them as NAME=FOLDER")
    every = set.union(*(set(m.videos) for m in methods))
    for method in methods:
        missing = sorted(every - set(method.videos))
        if missing:
            raise StudySourceError(f"{method.folder}: no video for clip(s) {', '.join(missing[:5])}"
                                   f"{' ...' if len(missing) > 5 else ''} that other methods have "
                                   f"(the methods must render the same clips, matched by file name)")
    return sorted(every)


def intended_emotion(clip: str) -> str | None:
    """The MEAD emotion word in a clip's name (W002_happy_level_3_001, 001_happy_level_3, .../sad/level_1/...)."""
    words = set(re.split(r"[^a-z]+", clip.lower()))
    found = [e for e in EMOTIONS if e in words]
    return found[0] if len(found) == 1 else None
