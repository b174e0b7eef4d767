"""One file of a corpus at a time: an ARKit track (.npy or Live Link Face CSV) checked and at the training rate,
the corpus's CORPUS.json, and CorpusError, the error that names the file and the kind of problem."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from dtl_foundation.arkit import ARKIT_NAMES, NPY_ORDER, NUM_BLENDSHAPES, ORDERS, BlendshapeNameError, from_order
from dtl_foundation.arkit_live_link import read_live_link_csv, sampled_rate
from dtl_foundation.mead import CORPUS_INFO_FILE, TRACK_EXTENSIONS

DEFAULT_FPS = 25.0  # rate of .npy tracks when neither the caller nor CORPUS.json says otherwise


class CorpusError(ValueError):
    """A problem with one file or folder of a corpus; the message starts with its path.

    `kind` names the class of problem for the scan report's counts: audio, track_unreadable, track_shape,
    track_columns, blendshape_names, empty_track, non_finite, out_of_range, duration_mismatch,
    unknown_emotion, bad_level, missing_track, missing_audio, duplicate, misplaced_file, corpus, and error
    (an unexpected exception while reading a clip).
    """

    def __init__(self, path: str | os.PathLike, problem: str, *, kind: str = "corpus",
                 clip_id: str | None = None) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem
        self.kind = kind
        self.clip_id = clip_id

    def __reduce__(self):  # keep the keyword fields when a worker process sends the error back
        return self.__class__, (self.path, self.problem), self.__dict__

    def as_dict(self) -> dict[str, Any]:
        return {"clip_id": self.clip_id, "file": self.path, "kind": self.kind, "problem": self.problem}


def problem_text(error: Exception, path: Path) -> str:
    """The error's message without the leading path that our readers already put there."""
    text = str(error)
    return text[len(f"{path}: "):] if text.startswith(f"{path}: ") else text


def load_track(path: str | os.PathLike, csv_fps: float = 60.0, npy_fps: float = DEFAULT_FPS,
               npy_order: str = NPY_ORDER) -> tuple[np.ndarray, float]:
    """A (T, 52) float32 track in Apple order and its frame rate.

    `.npy` files hold 52 columns in `npy_order` (their corpus's "arkit_order", Apple order unless stated) and carry
    no rate (`npy_fps`); Live Link Face `.csv` files are read by column name, at `csv_fps` unless their timecodes
    count another number of rows a second (a 30 fps take against a 60 fps timecode: `sampled_rate`). Raises
    CorpusError for an unreadable file or a wrong shape; the values themselves are checked by `check_track_values`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            track = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise CorpusError(path, f"unreadable track ({e})", kind="track_unreadable") from e
        if track.ndim != 2:
            raise CorpusError(path, f"track has shape {track.shape}; expected (frames, {NUM_BLENDSHAPES})",
                              kind="track_shape")
        if track.shape[1] != NUM_BLENDSHAPES:
            raise CorpusError(path, f"track has {track.shape[1]} columns; expected {NUM_BLENDSHAPES} ARKit "
                              f"blendshapes in {npy_order} order", kind="track_columns")
        if not (np.issubdtype(track.dtype, np.number) or track.dtype == bool):
            raise CorpusError(path, f"track has non-numeric dtype {track.dtype}", kind="track_unreadable")
        track = np.ascontiguousarray(track, dtype=np.float32)
        return (track if npy_order == NPY_ORDER else from_order(track, npy_order, source=path)), float(npy_fps)
    if suffix == ".csv":
        try:
            take = read_live_link_csv(path, fps=csv_fps)
        except BlendshapeNameError as e:
            text = problem_text(e, path)
            names = "blendshape" in text or "columns but" in text
            raise CorpusError(path, text, kind="blendshape_names" if names else "track_unreadable") from e
        except (OSError, UnicodeDecodeError, ValueError, csv.Error) as e:
            raise CorpusError(path, f"unreadable Live Link Face CSV ({e})", kind="track_unreadable") from e
        return take.blendshapes, float(sampled_rate(take.timecodes, csv_fps))
    raise CorpusError(path, f"unsupported track type {suffix!r}; expected one of {list(TRACK_EXTENSIONS)}",
                      kind="track_unreadable")


def check_track_values(track: np.ndarray, path: str | os.PathLike, margin: float) -> None:
    """Raise CorpusError for an empty track, NaN/inf frames, or values beyond [-margin, 1 + margin]."""
    frames = len(track)
    if frames == 0:
        raise CorpusError(path, "empty track (0 frames)", kind="empty_track")
    bad_frames = ~np.isfinite(track).all(axis=1)
    if bad_frames.any():
        first = int(np.argmax(bad_frames))
        column = int(np.argmax(~np.isfinite(track[first])))
        raise CorpusError(path, f"{int(bad_frames.sum())} of {frames} frames hold NaN or inf values "
                          f"(first at frame {first}, {ARKIT_NAMES[column]})", kind="non_finite")
    excess = np.maximum(-track, track - 1.0)  # distance outside [0, 1], negative inside
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
    if excess[worst] > margin:
        count = int((excess > margin).sum())
        raise CorpusError(path, f"values far outside [0, 1]: worst {float(track[worst]):.4g} for "
                          f"{ARKIT_NAMES[worst[1]]} at frame {worst[0]}; {count} values beyond "
                          f"[{-margin:g}, {1 + margin:g}]", kind="out_of_range")


def read_corpus_info(root: str | os.PathLike) -> dict[str, Any]:
    """The optional <root>/CORPUS.json ({} when absent): "fps", "arkit_order", "synthetic", "description"."""
    path = Path(root) / CORPUS_INFO_FILE
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorpusError(path, f"unreadable corpus info ({e})") from e
    if not isinstance(info, dict):
        raise CorpusError(path, f"corpus info must be a JSON object, not {type(info).__name__}")
    return info


def corpus_npy_order(root: str | os.PathLike, info: dict[str, Any]) -> tuple[str, bool]:
    """The index order of the corpus's `.npy` tracks and whether CORPUS.json states it (else NPY_ORDER)."""
    order = info.get("arkit_order")
    if order is None:
        return NPY_ORDER, False
    if order not in ORDERS:
        raise CorpusError(Path(root) / CORPUS_INFO_FILE, f'unknown "arkit_order" {order!r}; known orders: '
                          f"{', '.join(ORDERS)}")
    return order, True
