"""The videos a study compares: one folder per method (an evaluation folder, a run directory, the corpus or any
folder of MP4s), matched by clip id as `dtl eval` matches them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from experiments.evaluate.inputs import clip_id_of

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


def method_videos(argument: str) -> MethodVideos:
    """A method's videos by clip id: a MEAD-layout path (<ID>/video/<view>/<emotion>/level_<k>/<NNN>.mp4, as the
    corpus has them) and a generated file named by clip id (<ID>_<emotion>_level_<k>_<NNN>.mp4) are the same clip."""
    name, folder = parse_method_argument(argument)
    root = video_folder(folder)
    videos: dict[str, Path] = {}
    for path in sorted(root.rglob(f"*{VIDEO_SUFFIX}")):
        relative = path.relative_to(root)
        if not path.is_file() or any(p in SKIPPED_DIRS or p.startswith(".") for p in relative.parts[:-1]):
            continue
        clip = clip_id_of(relative)
        if clip in videos:
            raise StudySourceError(f"{root}: {videos[clip].relative_to(root)} and {relative} are both clip {clip}")
        videos[clip] = path.resolve()
    if not videos:
        raise StudySourceError(f"{root}: no {VIDEO_SUFFIX} videos in this folder or below")
    return MethodVideos(name or folder.resolve().name, folder.resolve(), videos)


def common_clips(methods: list[MethodVideos]) -> list[str]:
    """The first method's clips, sorted; every other method must have each of them (a reference folder such as the
    corpus may hold more). A clip one lacks is an error naming it."""
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise StudySourceError(f"two methods have the same name ({', '.join(names)}): name them as NAME=FOLDER")
    clips = sorted(methods[0].videos)
    for method in methods[1:]:
        missing = [c for c in clips if c not in method.videos]
        if missing:
            raise StudySourceError(f"{method.folder}: no video for clip(s) {', '.join(missing[:5])}"
                                   f"{' ...' if len(missing) > 5 else ''} of {methods[0].folder} "
                                   f"(the methods must render the same clips, matched by clip id)")
    return clips
