"""The manifest of a validated corpus: one record per clip, saved as JSON Lines behind a header line."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from dtl_foundation.arkit import NPY_ORDER
from dtl_foundation.atomic_files import atomic_write_text

MANIFEST_FORMAT = "dreamtalk-lab/manifest"
MANIFEST_VERSION = 1
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass
class ClipRecord:
    """One validated clip: where its files are, its track's rate and length, its audio's length, its split."""

    clip_id: str
    speaker: str
    emotion: str
    level: int
    sentence: str
    audio_path: str
    track_path: str
    video_path: str | None
    fps: float
    frames: int
    duration: float
    split: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ClipRecord":
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"missing fields {missing}")
        record = cls(**{n: data[n] for n in names})
        record.level, record.frames = int(record.level), int(record.frames)
        record.fps, record.duration = float(record.fps), float(record.duration)
        return record


def _as_set(value: str | int | Iterable | None) -> set | None:
    if value is None:
        return None
    if isinstance(value, (str, int)):
        return {value}
    return set(value)


@dataclass
class Manifest:
    """The clips of one corpus and the corpus-level facts they were validated under.

    `skipped` lists the clips that `scan_corpus(on_error="skip")` left out, as {clip_id, file, problem}.
    """

    records: list[ClipRecord]
    root: str
    fps: float = 25.0
    csv_fps: float = 60.0
    view: str = "front"
    arkit_order: str = NPY_ORDER  # the column order of the corpus's .npy tracks (read into Apple order)
    arkit_order_stated: bool = False  # whether CORPUS.json states it
    synthetic: bool = False
    description: str = ""
    splits: dict[str, list[str]] = field(default_factory=dict)  # split -> speakers, as decided by the scan
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ClipRecord]:
        return iter(self.records)

    def split(self, name: str) -> list[ClipRecord]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; splits are {list(SPLITS)}")
        return [r for r in self.records if r.split == name]

    def speakers(self, split: str | None = None) -> list[str]:
        records = self.records if split is None else self.split(split)
        return sorted({r.speaker for r in records})

    def filter(self, *, split: str | Iterable[str] | None = None, speakers: str | Iterable[str] | None = None,
               emotions: str | Iterable[str] | None = None, levels: int | Iterable[int] | None = None,
               predicate: Callable[[ClipRecord], bool] | None = None) -> "Manifest":
        """A manifest of the records that match every criterion given (the corpus facts are kept)."""
        wanted = {"split": _as_set(split), "speaker": _as_set(speakers), "emotion": _as_set(emotions),
                  "level": _as_set(levels)}
        kept = [r for r in self.records
                if all(values is None or getattr(r, name) in values for name, values in wanted.items())
                and (predicate is None or predicate(r))]
        return dataclasses.replace(self, records=kept)

    # --- files -------------------------------------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "root": self.root, "fps": self.fps,
            "csv_fps": self.csv_fps, "view": self.view, "arkit_order": self.arkit_order,
            "arkit_order_stated": self.arkit_order_stated, "synthetic": self.synthetic,
            "description": self.description, "splits": self.splits,
            "counts": {s: len(self.split(s)) for s in SPLITS}, "skipped": self.skipped,
        }

    def save(self, path: str | os.PathLike) -> None:
        """JSON Lines: the header (corpus facts, splits, skipped clips), then one record per line."""
        lines = [json.dumps(self.header())] + [json.dumps(dataclasses.asdict(r)) for r in self.records]
        atomic_write_text(path, "\n".join(lines) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Manifest":
        path = Path(path)
        lines = path.read_text().splitlines()
        try:
            header = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            header = None
        if not isinstance(header, dict) or header.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"{path}: not a manifest (the first line must be a {MANIFEST_FORMAT!r} header)")
        if header.get("version") != MANIFEST_VERSION:
            raise ValueError(f"{path}: manifest version {header.get('version')}, this code reads {MANIFEST_VERSION}")
        records = []
        for number, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            try:
                records.append(ClipRecord.from_dict(json.loads(line)))
            except (json.JSONDecodeError, ValueError, TypeError) as e:
                raise ValueError(f"{path}: line {number}: bad record ({e})") from e
        return cls(records=records, root=header["root"], fps=float(header["fps"]),
                   csv_fps=float(header.get("csv_fps", 60.0)), view=header.get("view", "front"),
                   arkit_order=header.get("arkit_order", NPY_ORDER),
                   arkit_order_stated=bool(header.get("arkit_order_stated", False)),
                   synthetic=bool(header.get("synthetic", False)), description=header.get("description", ""),
                   splits=header.get("splits", {}), skipped=header.get("skipped", []))

    def save_csv(self, path: str | os.PathLike) -> None:
        """The records as a CSV table for people and spreadsheets (the JSONL file is the one code reads)."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=[f.name for f in dataclasses.fields(ClipRecord)],
                                lineterminator="\n")
        writer.writeheader()
        for r in self.records:
            writer.writerow({k: "" if v is None else v for k, v in dataclasses.asdict(r).items()})
        atomic_write_text(path, buf.getvalue())
