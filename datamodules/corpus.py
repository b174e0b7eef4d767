"""Scan a MEAD-layout corpus: validate every clip's audio and ARKit track, split by speaker, build the manifest."""

from __future__ import annotations

import json
import logging
import os
import random
from collections import Counter, defaultdict
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

from dtl_foundation.media.audio import AudioError, audio_duration
from dtl_foundation.atomic_files import atomic_write_text
from datamodules.manifest import SPLITS, ClipRecord, Manifest
from datamodules.tracks import (DEFAULT_FPS, CorpusError, check_track_values, corpus_npy_order, load_track,
                               problem_text, read_corpus_info)
from dtl_foundation.mead import (AUDIO_EXTENSIONS, CORPUS_INFO_FILE, EMOTIONS, TRACK_EXTENSIONS, VIDEO_EXTENSIONS,
                              ClipKey, levels_of, parse_level_dir)

__all__ = ["ClipRecord", "Manifest", "scan_corpus", "split_by_speakers"]

log = logging.getLogger(__name__)


# --- speaker splits ------------------------------------------------------------------------------------

def _speaker_choice(choice: int | str | Iterable[str], name: str) -> int | list[str]:
    if isinstance(choice, bool):
        raise TypeError(f"{name}: expected a count or a list of speakers, got {choice!r}")
    if isinstance(choice, int):
        if choice < 0:
            raise ValueError(f"{name}: a count of speakers cannot be negative ({choice})")
        return choice
    if isinstance(choice, str):
        return [s.strip() for s in choice.split(",") if s.strip()]
    return [str(s) for s in choice]


def split_by_speakers(speakers: Iterable[str], val_speakers: int | str | Iterable[str] = 1,
                      test_speakers: int | str | Iterable[str] = 1, seed: int = 0) -> dict[str, list[str]]:
    """Assign every speaker to exactly one of train / val / test.

    Each of `val_speakers` and `test_speakers` is a list of speaker ids (or a comma-separated string) or
    a count. Counts are drawn from the sorted speakers shuffled by `seed`, test first, so the test
    speakers do not change when only the number of validation speakers does.
    """
    speakers = sorted(set(speakers))
    val, test = _speaker_choice(val_speakers, "val_speakers"), _speaker_choice(test_speakers, "test_speakers")
    chosen: dict[str, list[str]] = {}
    for split, choice in (("val", val), ("test", test)):
        if isinstance(choice, list):
            unknown = [s for s in choice if s not in speakers]
            if unknown:
                raise ValueError(f"{split}_speakers {unknown} are not among the corpus speakers {speakers}")
            chosen[split] = sorted(set(choice))
    if isinstance(val, list) and isinstance(test, list) and set(val) & set(test):
        raise ValueError(f"speakers {sorted(set(val) & set(test))} are in both val_speakers and test_speakers")
    order = list(speakers)
    random.Random(seed).shuffle(order)
    for split, choice in (("test", test), ("val", val)):
        if isinstance(choice, int):
            taken = {s for v in chosen.values() for s in v}
            free = [s for s in order if s not in taken]
            if choice > len(free):
                raise ValueError(f"{split}_speakers={choice} but only {len(free)} of the {len(speakers)} "
                                 f"speakers {speakers} are left to hold out")
            chosen[split] = sorted(free[:choice])
    held_out = set(chosen["val"]) | set(chosen["test"])
    splits = {"train": [s for s in speakers if s not in held_out], "val": chosen["val"], "test": chosen["test"]}
    if not splits["train"]:
        log.warning("every speaker is held out for val/test: the train split is empty (%s)", splits)
    return splits


# --- walking the layout ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClipFiles:
    """The files found for one clip, not yet validated."""

    key: ClipKey
    audio: Path
    track: Path
    video: Path | None


def _ignored(name: str) -> bool:
    return name.startswith(".") or name == CORPUS_INFO_FILE or name.upper().startswith("README")


def _entries(folder: Path) -> list[Path]:
    return [folder / n for n in sorted(os.listdir(folder)) if not _ignored(n)]


def find_speakers(root: Path) -> list[Path]:
    """Folders directly under root that hold an audio/ or arkit/ folder."""
    return [p for p in _entries(root) if p.is_dir() and ((p / "audio").is_dir() or (p / "arkit").is_dir())]


class _LayoutWalker:
    """Collects a speaker's clip files by (emotion, level, sentence), and the layout problems on the way."""

    def __init__(self) -> None:
        self.problems: list[CorpusError] = []
        self.ignored: list[Path] = []

    def _misplaced(self, path: Path, extensions: tuple[str, ...], what: str) -> None:
        if path.is_file() and path.suffix.lower() in extensions:
            self.problems.append(CorpusError(path, f"{what} file outside an <emotion>/level_<k>/ folder",
                                             kind="misplaced_file"))
        else:
            self.ignored.append(path)

    def _level(self, folder: Path, emotion: str) -> int | None:
        level = parse_level_dir(folder.name)
        if level is None:
            problem = f"bad level folder {folder.name!r}; expected level_<k> with k in {list(levels_of(emotion))}"
        elif level not in levels_of(emotion):
            problem = (f"unknown level {level} for {emotion}: MEAD has "
                       + ("neutral at level_1 only" if emotion == "neutral" else "levels level_1 to level_3"))
        else:
            return level
        self.problems.append(CorpusError(folder, problem, kind="bad_level"))
        return None

    def collect(self, tree: Path, extensions: tuple[str, ...], what: str) -> dict[tuple[str, int, str], list[Path]]:
        found: dict[tuple[str, int, str], list[Path]] = defaultdict(list)
        if not tree.is_dir():
            return found
        for emotion_dir in _entries(tree):
            if not emotion_dir.is_dir():
                self._misplaced(emotion_dir, extensions, what)
                continue
            emotion = emotion_dir.name
            if emotion not in EMOTIONS:
                self.problems.append(CorpusError(emotion_dir, f"unknown emotion folder {emotion!r}; known "
                                                 f"emotions are {', '.join(EMOTIONS)}", kind="unknown_emotion"))
                continue
            for level_dir in _entries(emotion_dir):
                if not level_dir.is_dir():
                    self._misplaced(level_dir, extensions, what)
                    continue
                level = self._level(level_dir, emotion)
                if level is None:
                    continue
                for path in _entries(level_dir):
                    if path.is_file() and path.suffix.lower() in extensions:
                        found[(emotion, level, path.stem)].append(path)
                    else:
                        self.ignored.append(path)
        return found

    def clips(self, speaker_dir: Path, view: str) -> list[ClipFiles]:
        speaker = speaker_dir.name
        audio = self.collect(speaker_dir / "audio", AUDIO_EXTENSIONS, "audio")
        tracks = self.collect(speaker_dir / "arkit", TRACK_EXTENSIONS, "track")
        clips = []
        for emotion, level, sentence in sorted(set(audio) | set(tracks)):
            key = ClipKey(speaker, emotion, level, sentence)
            audio_files = audio.get((emotion, level, sentence), [])
            track_files = tracks.get((emotion, level, sentence), [])
            for files, what in ((audio_files, "audio"), (track_files, "track")):
                if len(files) > 1:
                    self.problems.append(CorpusError(files[0], f"{len(files)} {what} files for one clip: "
                                                     f"{[p.name for p in files]}", kind="duplicate",
                                                     clip_id=key.clip_id))
            if len(audio_files) > 1 or len(track_files) > 1:
                continue
            if not track_files:
                expected = key.track_path(speaker_dir.parent).with_suffix("")
                self.problems.append(CorpusError(audio_files[0], f"audio without a track (expected {expected}.npy "
                                                 "or .csv)", kind="missing_track", clip_id=key.clip_id))
            elif not audio_files:
                expected = key.audio_path(speaker_dir.parent).with_suffix("")
                self.problems.append(CorpusError(track_files[0], f"track without audio (expected {expected} with "
                                                 f"one of {list(AUDIO_EXTENSIONS)})", kind="missing_audio",
                                                 clip_id=key.clip_id))
            else:
                video = next((p for ext in VIDEO_EXTENSIONS
                              if (p := key.video_path(speaker_dir.parent, view, ext)).is_file()), None)
                clips.append(ClipFiles(key, audio_files[0], track_files[0], video))
        return clips


# --- validating one clip ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ValidationRules:
    npy_fps: float
    csv_fps: float
    npy_order: str
    duration_tolerance: float  # seconds
    value_margin: float


def validate_clip(clip: ClipFiles, rules: ValidationRules) -> ClipRecord:
    """Open the clip's audio and track and check them; the record's split is left empty."""
    clip_id = clip.key.clip_id
    try:
        try:
            duration = audio_duration(clip.audio)
        except AudioError as e:
            raise CorpusError(clip.audio, problem_text(e, clip.audio), kind="audio") from e
        track, fps = load_track(clip.track, csv_fps=rules.csv_fps, npy_fps=rules.npy_fps, npy_order=rules.npy_order)
        check_track_values(track, clip.track, rules.value_margin)
        track_duration = len(track) / fps
        tolerance = max(rules.duration_tolerance, 2.0 / fps)
        if abs(duration - track_duration) > tolerance:
            raise CorpusError(clip.track, f"audio and track durations disagree: audio {duration:.3f} s "
                              f"({clip.audio}) but track {track_duration:.3f} s ({len(track)} frames at {fps:g} "
                              f"fps), {abs(duration - track_duration):.3f} s apart (tolerance {tolerance:.3f} s)",
                              kind="duration_mismatch")
    except CorpusError as e:
        e.clip_id = clip_id
        raise
    except Exception as e:  # anything else a damaged file provokes; reported against the clip, not fatal in skip
        raise CorpusError(clip.track, f"{type(e).__name__} while validating clip ({e})", kind="error",
                          clip_id=clip_id) from e
    k = clip.key
    return ClipRecord(clip_id=clip_id, speaker=k.speaker, emotion=k.emotion, level=k.level, sentence=k.sentence,
                      audio_path=str(clip.audio), track_path=str(clip.track),
                      video_path=str(clip.video) if clip.video else None, fps=fps, frames=len(track),
                      duration=float(duration), split="")


def _validate_batch(clips: list[ClipFiles], rules: ValidationRules) -> list[ClipRecord | CorpusError]:
    results: list[ClipRecord | CorpusError] = []
    for clip in clips:
        try:
            results.append(validate_clip(clip, rules))
        except CorpusError as e:
            results.append(e)
    return results


def _validate_all(clips: list[ClipFiles], rules: ValidationRules, *, stop_at_first: bool, workers: int,
                  progress: bool, desc: str) -> list[ClipRecord | CorpusError]:
    """Validate in order (in a process pool when workers > 0); with stop_at_first, stop after an error."""
    results: list[ClipRecord | CorpusError] = []
    with tqdm(total=len(clips), desc=desc, unit="clip", disable=not progress) as bar:
        if workers <= 0:
            for clip in clips:
                results.extend(_validate_batch([clip], rules))
                bar.update(1)
                if stop_at_first and isinstance(results[-1], CorpusError):
                    break
            return results
        batch = 8  # clips per task: amortises the pickling round trip, keeps the progress bar moving
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures: list[Future] = [pool.submit(_validate_batch, clips[i:i + batch], rules)
                                     for i in range(0, len(clips), batch)]
            for future in futures:
                done = future.result()
                results.extend(done)
                bar.update(len(done))
                if stop_at_first and any(isinstance(r, CorpusError) for r in done):
                    for f in futures:
                        f.cancel()
                    break
    return results


# --- the scan --------------------------------------------------------------------------------------------

def order_note(order: str, stated: bool) -> str:
    return (f"CORPUS.json states arkit_order {order!r}" if stated else
            f"CORPUS.json does not state arkit_order: .npy tracks read in the default {order!r} order")


def _write_report(path: Path, root: Path, clips: int, problems: list[CorpusError], order: tuple[str, bool]) -> None:
    report = {"root": str(root), "clips": clips, "skipped": len(problems),
              "arkit_order": order[0], "arkit_order_stated": order[1], "arkit_order_note": order_note(*order),
              "counts": dict(sorted(Counter(p.kind for p in problems).items())),
              "problems": [p.as_dict() for p in problems]}
    atomic_write_text(path, json.dumps(report, indent=1) + "\n")


def scan_corpus(root: str | os.PathLike, *, fps: float | None = None, csv_fps: float = 60.0, view: str = "front",
                val_speakers: int | str | Iterable[str] = 1, test_speakers: int | str | Iterable[str] = 1,
                seed: int = 0, on_error: str = "fail", report_path: str | os.PathLike | None = None,
                duration_tolerance: float = 0.2, value_margin: float = 0.5, progress: bool = True,
                workers: int = 0) -> Manifest:
    """Validate every clip of a MEAD-layout corpus and return its manifest, split by held-out speakers.

    fps: rate of the .npy tracks (default: CORPUS.json's "fps", else 25); their column order is CORPUS.json's
    "arkit_order" (else Apple order, which the report then says); csv_fps: rate of Live Link Face CSV tracks.
    duration_tolerance (seconds): audio and track may differ by max(duration_tolerance, 2/fps) seconds.
    value_margin: a track value outside [-value_margin, 1 + value_margin] is an error.
    on_error="fail" raises the first problem as a CorpusError naming the file; "skip" leaves bad clips out
    and lists them in `manifest.skipped`. The report (JSON: counts by kind and every problem) is written
    to `report_path` when one is given, also when the scan fails.
    """
    if on_error not in ("fail", "skip"):
        raise ValueError(f"on_error must be 'fail' or 'skip', not {on_error!r}")
    root = Path(os.path.abspath(os.path.expanduser(root)))
    if not root.is_dir():
        raise CorpusError(root, "corpus root is not a folder" if root.exists() else "corpus folder does not exist")
    info = read_corpus_info(root)
    npy_fps = fps if fps is not None else info.get("fps", DEFAULT_FPS)
    if isinstance(npy_fps, bool) or not isinstance(npy_fps, (int, float)) or not npy_fps > 0:
        where = root / CORPUS_INFO_FILE if fps is None else root
        raise CorpusError(where, f"the track fps must be a positive number, not {npy_fps!r}")
    npy_fps = float(npy_fps)
    npy_order, order_stated = corpus_npy_order(root, info)
    if not order_stated:
        log.info("%s: %s", root, order_note(npy_order, order_stated))

    speaker_dirs = find_speakers(root)
    if not speaker_dirs:
        hint = " (it looks like a speaker folder itself: pass its parent)" if (root / "audio").is_dir() else ""
        raise CorpusError(root, f"no speaker folders (<ID>/audio or <ID>/arkit) in the corpus root{hint}")
    splits = split_by_speakers([d.name for d in speaker_dirs], val_speakers, test_speakers, seed)
    split_of = {s: name for name, members in splits.items() for s in members}

    walker = _LayoutWalker()
    clips = [c for d in speaker_dirs for c in walker.clips(d, view)]
    problems = list(walker.problems)
    if walker.ignored:
        log.warning("%s: ignored %d files and folders that are not part of the layout, e.g. %s", root,
                    len(walker.ignored), [str(p) for p in walker.ignored[:3]])
    report = Path(report_path) if report_path is not None else None
    if on_error == "fail" and problems:
        if report:
            _write_report(report, root, 0, problems, (npy_order, order_stated))
        raise problems[0]

    rules = ValidationRules(npy_fps=npy_fps, csv_fps=float(csv_fps), npy_order=npy_order,
                            duration_tolerance=float(duration_tolerance),
                            value_margin=float(value_margin))
    results = _validate_all(clips, rules, stop_at_first=on_error == "fail", workers=workers, progress=progress,
                            desc=f"validating {root.name}")
    records = [r for r in results if isinstance(r, ClipRecord)]
    problems += [r for r in results if isinstance(r, CorpusError)]
    problems.sort(key=lambda p: p.path)
    if report:
        _write_report(report, root, len(records), problems, (npy_order, order_stated))
    if on_error == "fail" and problems:
        raise problems[0]
    if problems:
        counts = dict(Counter(p.kind for p in problems))
        log.warning("%s: skipped %d problem clip(s) or folder(s) %s%s; first: %s", root, len(problems), counts,
                    f", report in {report}" if report else "", problems[0])
    if not records:
        first = f", first: {problems[0]}" if problems else ""
        raise CorpusError(root, f"no valid clips ({len(problems)} problems{first})")

    for r in records:
        r.split = split_of[r.speaker]
    for name in SPLITS:
        if not any(r.split == name for r in records) and splits[name]:
            log.warning("%s: the %s split (speakers %s) has no valid clips", root, name, splits[name])
    return Manifest(records=records, root=str(root), fps=npy_fps, csv_fps=float(csv_fps), view=view,
                    arkit_order=npy_order, arkit_order_stated=order_stated,
                    synthetic=bool(info.get("synthetic", False)), description=str(info.get("description", "")),
                    splits=splits, skipped=[p.as_dict() for p in problems])
