"""What `dtl data extract` was asked and what it has written: the options, the corpus's videos and this shard of
them, where each clip's outputs and record go, and which clips are done (see extract.py for the layout)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules.extraction.quality import QualityThresholds
from dtl_foundation.mead import EMOTIONS, VIDEO_EXTENSIONS, ClipKey, levels_of, parse_level_dir
from dtl_foundation.weights import sha256_of

BOOKS = "extraction"
BACKENDS = ("fit", "mediapipe")
SPEAKER_SHAPE_CLIPS = 3  # clips (neutral first) a speaker's face shape is fitted on


class ExtractError(ValueError):
    """A problem with the corpus or the options as a whole (not with one clip)."""


class ClipFailure(Exception):
    """One clip cannot be extracted; `kind` is no_face, too_short, unreadable or error."""

    def __init__(self, kind: str, problem: str) -> None:
        super().__init__(problem)
        self.kind = kind
        self.problem = problem

    def __reduce__(self):
        return self.__class__, (self.kind, self.problem)


@dataclass(frozen=True)
class ClipVideo:
    key: ClipKey
    video: Path

    @property
    def clip_id(self) -> str:
        return self.key.clip_id


@dataclass(frozen=True)
class ExtractOptions:
    """What `dtl data extract` was asked; see its --help for each."""

    corpus: Path
    out: Path
    view: str = "front"
    fps: float = 25.0
    backend: str = "fit"
    workers: int = 1
    shard: tuple[int, int] = (0, 1)
    csv: bool = False
    limit: int | None = None
    device: str = "cpu"
    min_frames: int = 5
    min_face_share: float = 0.5
    thresholds: QualityThresholds = QualityThresholds()
    calibration_size: int = 384
    cache_dir: str | None = None
    model: str | None = None
    model_sha256: str | None = None
    retry_failed: bool = False
    progress: bool = True
    prior: Path | None = None  # fit backend: an ExpressionPrior .npz (`dtl data prior`) for a MAP fit

    def books(self) -> Path:
        return self.out / BOOKS


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N) with 0 <= K < N (a Slurm array task id over the array size); K = 'array' takes this Slurm
    array task's id ($SLURM_ARRAY_TASK_ID), as `dtl submit extract` writes it."""
    if text.startswith("array/"):
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        if task is None:
            raise ExtractError(f"--shard {text}: not in a Slurm job array (no SLURM_ARRAY_TASK_ID)")
        text = f"{task}/{text.split('/', 1)[1]}"
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ExtractError(f"--shard must be K/N with whole numbers, e.g. 0/4; got {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise ExtractError(f"--shard {text}: need 0 <= K < N")
    return k, n


def find_videos(corpus: Path, view: str) -> tuple[list[ClipVideo], list[dict]]:
    """Every <ID>/video/<view>/<emotion>/level_<k>/<NNN>.mp4 in clip-id order, and the misplaced paths found."""
    if not corpus.is_dir():
        raise ExtractError(f"{corpus}: no such corpus directory")
    clips, problems = [], []
    for speaker in sorted(p for p in corpus.iterdir() if p.is_dir() and not p.name.startswith(".")):
        tree = speaker / "video" / view
        if not tree.is_dir():
            continue
        for emotion_dir in sorted(p for p in tree.iterdir() if not p.name.startswith(".")):
            if emotion_dir.name not in EMOTIONS:
                problems.append({"file": str(emotion_dir), "kind": "layout",
                                 "problem": f"unknown emotion folder; known: {', '.join(EMOTIONS)}"})
                continue
            for level_dir in sorted(p for p in emotion_dir.iterdir() if not p.name.startswith(".")):
                level = parse_level_dir(level_dir.name)
                if level is None or level not in levels_of(emotion_dir.name):
                    problems.append({"file": str(level_dir), "kind": "layout",
                                     "problem": f"not a level folder of {emotion_dir.name}"})
                    continue
                for video in sorted(level_dir.iterdir()):
                    if video.suffix.lower() in VIDEO_EXTENSIONS and not video.name.startswith("."):
                        clips.append(ClipVideo(ClipKey(speaker.name, emotion_dir.name, level, video.stem), video))
    clips.sort(key=lambda c: c.clip_id)
    return clips, problems


def select(clips: list[ClipVideo], shard: tuple[int, int], limit: int | None) -> list[ClipVideo]:
    """The first `limit` clips (in clip-id order), then every N-th from the K-th: shards split the same list."""
    chosen = clips[:limit] if limit is not None else clips
    k, n = shard
    return chosen[k::n]


# --- per-clip files -------------------------------------------------------------------------------------------

def record_path(options: ExtractOptions, clip: ClipVideo) -> Path:
    return options.books() / "clips" / f"{clip.clip_id}.json"


def landmarks_path(options: ExtractOptions, clip: ClipVideo) -> Path:
    return options.books() / "landmarks" / f"{clip.clip_id}.npz"


def speaker_path(options: ExtractOptions, speaker: str) -> Path:
    return options.books() / "speakers" / f"{speaker}.npz"


def pose_path(options: ExtractOptions, key: ClipKey) -> Path:
    return key.head_pose_path(options.out)


def csv_path(options: ExtractOptions, key: ClipKey) -> Path:
    return options.out / key.speaker / "livelink" / key.emotion / f"level_{key.level}" / f"{key.sentence}.csv"


def prior_sha256(options: ExtractOptions) -> str | None:
    """The sha256 of the prior file (None without one): a clip's record names the prior it was fitted with."""
    if options.prior is None or options.backend != "fit":
        return None
    return sha256_of(Path(options.prior))


def read_record(options: ExtractOptions, clip: ClipVideo) -> dict | None:
    try:
        return json.loads(record_path(options, clip).read_text())
    except (OSError, ValueError):
        return None


def is_done(options: ExtractOptions, clip: ClipVideo) -> bool:
    """A finished clip: its record says ok (or failed, unless retrying), with this backend, rate and prior, and an
    ok clip's track checks out."""
    record = read_record(options, clip)
    if record is None or record.get("backend") != options.backend or record.get("fps") != options.fps:
        return False
    if record.get("prior_sha256") != prior_sha256(options):
        return False
    if record.get("status") == "failed":
        return not options.retry_failed
    try:
        track = np.load(clip.key.track_path(options.out), allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return False
    return (record.get("status") == "ok" and track.shape == (record.get("frames"), 52)
            and bool(np.isfinite(track).all()) and float(track.min()) >= 0.0 and float(track.max()) <= 1.0)


def excluded_clip_ids(options: ExtractOptions) -> set[str]:
    """Clips whose record lists quality failures (for --exclude-below)."""
    out = set()
    folder = options.books() / "clips"
    for path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("status") == "ok" and record.get("below_quality"):
            out.add(record["clip_id"])
    return out
