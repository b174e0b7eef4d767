"""What `dtl eval` scores: the generated videos, each matched to its reference by relative path or clip id, and the
emotion each one should show (read from a MEAD-layout path or a clip id)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dtl_foundation.mead import EMOTIONS, parse_level_dir

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


class EvaluationInputError(ValueError):
    """A generated or reference folder that cannot be evaluated; the message starts with the path."""


@dataclass(frozen=True)
class VideoPair:
    """One generated video, its reference (None without --reference) and the emotion it should show (or None)."""

    name: str  # the generated video's path relative to the generated folder, without suffix
    generated: Path
    reference: Path | None
    emotion: str | None


def find_videos(folder: Path) -> list[Path]:
    """Video files under `folder` (or `folder` itself when it is one), sorted."""
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise EvaluationInputError(f"{folder}: no such file or folder")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
                  and not p.name.startswith("."))


def clip_id_of(path: Path) -> str:
    """<ID>/video/<view>/<emotion>/level_<k>/<NNN>.mp4 or <ID>/<emotion>/level_<k>/<NNN>.mp4 ->
    "<ID>_<emotion>_level_<k>_<NNN>" (MEAD); otherwise the file's stem (a generated file may be named by clip id)."""
    parts = path.with_suffix("").parts
    if len(parts) >= 4 and parts[-3] in EMOTIONS and parse_level_dir(parts[-2]) is not None:
        speaker = parts[-6] if len(parts) >= 6 and parts[-5] == "video" else parts[-4]
        return f"{speaker}_{parts[-3]}_{parts[-2]}_{parts[-1]}"
    return parts[-1]


def emotion_of(path: Path) -> str | None:
    """The MEAD emotion a path names: an <emotion>/level_<k> folder pair, else an emotion word in the clip id."""
    parts = path.parts
    for folder, level in zip(parts[:-1], parts[1:]):
        if folder in EMOTIONS and parse_level_dir(level) is not None:
            return folder
    words = set(clip_id_of(path).replace("-", "_").split("_"))
    found = [e for e in EMOTIONS if e in words]
    return found[0] if len(found) == 1 else None


def match_videos(generated: str | os.PathLike, reference: str | os.PathLike | None = None) -> list[VideoPair]:
    """Pair every generated video with the reference at the same relative path (any video suffix), else the
    reference with the same clip id; a generated video without a reference is an error naming it."""
    generated = Path(generated)
    videos = find_videos(generated)
    if not videos:
        raise EvaluationInputError(f"{generated}: no video files ({', '.join(VIDEO_SUFFIXES)}) to evaluate")
    base = generated if generated.is_dir() else generated.parent
    by_path: dict[Path, Path] = {}
    by_clip: dict[str, list[Path]] = {}
    reference_root = Path(reference) if reference is not None else None
    if reference_root is not None:
        references = find_videos(reference_root)
        if not references:
            raise EvaluationInputError(f"{reference_root}: no reference video files ({', '.join(VIDEO_SUFFIXES)})")
        ref_base = reference_root if reference_root.is_dir() else reference_root.parent
        for ref in references:
            relative = ref.relative_to(ref_base)
            by_path[relative.with_suffix("")] = ref
            by_clip.setdefault(clip_id_of(relative), []).append(ref)
    pairs = []
    for video in videos:
        relative = video.relative_to(base)
        ref = None
        if reference_root is not None:
            ref = by_path.get(relative.with_suffix(""))
            if ref is None:
                candidates = by_clip.get(clip_id_of(relative), [])
                if len(candidates) != 1:
                    problem = "no reference" if not candidates else f"{len(candidates)} references {candidates}"
                    raise EvaluationInputError(
                        f"{video}: {problem} with relative path {relative.with_suffix('')} or clip id "
                        f"{clip_id_of(relative)} under {reference_root}")
                ref = candidates[0]
        emotion = emotion_of(relative) or (emotion_of(ref.relative_to(reference_root if reference_root.is_dir()
                                                                      else reference_root.parent))
                                           if ref is not None else None)
        pairs.append(VideoPair(str(relative.with_suffix("")), video, ref, emotion))
    return pairs
