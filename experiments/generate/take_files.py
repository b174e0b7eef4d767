"""The file names of a batch of takes: one stem per input, never two inputs on one name (checked before anything is
written), and which takes an earlier run already finished (`--skip-existing`)."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path


AUDIO_SUFFIXES = (".wav", ".flac", ".m4a", ".mp3", ".ogg")


def audio_inputs(ns) -> list[Path]:
    """The audio files a `dtl generate` command names: --audio, then --audio-list's lines, then --audio-dir's
    audio files (video only) in name order."""
    files = [Path(a) for a in ns.audio]
    if ns.audio_list:
        files += [Path(line.strip()) for line in Path(ns.audio_list).read_text().splitlines() if line.strip()]
    if getattr(ns, "audio_dir", None):
        files += sorted(p for p in Path(ns.audio_dir).iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    return files


def input_stems(audio_files: list[Path]) -> list[str]:
    """A distinct stem per input: its file's stem, or, where inputs share one, the path parts that tell them apart
    (talk.mp3 and talk.m4a -> talk_mp3 and talk_m4a; happy/001.wav and sad/001.wav -> happy-001 and sad-001).
    Raises ValueError naming the inputs when a file is given twice or two inputs would still share a name."""
    resolved = [Path(os.path.abspath(p)) for p in audio_files]
    seen: dict[Path, Path] = {}
    for given, path in zip(audio_files, resolved):
        if path in seen:
            raise ValueError(f"{given}: given twice (also as {seen[path]}); each input makes one take")
        seen[path] = given
    by_stem: dict[str, list[int]] = defaultdict(list)
    for i, path in enumerate(resolved):
        by_stem[path.stem].append(i)
    stems = [path.stem for path in resolved]
    for group in (g for g in by_stem.values() if len(g) > 1):
        parents = [resolved[i].parent for i in group]
        common = Path(os.path.commonpath(parents))
        for i in group:
            stems[i] = "-".join(resolved[i].parent.relative_to(common).parts + (resolved[i].stem,))
        same_folder = [i for i in group if sum(stems[j] == stems[i] for j in group) > 1]
        for i in same_folder:  # same folder and stem: the extension tells them apart
            stems[i] += "_" + resolved[i].suffix.lower().lstrip(".")
    names: dict[str, int] = {}
    for i, stem in enumerate(stems):
        if stem in names:
            raise ValueError(f"{audio_files[names[stem]]} and {audio_files[i]} would both be written as {stem}_*; "
                             "rename one or generate them into different --out folders")
        names[stem] = i
    return stems


def take_finished(metadata_path: Path, request: dict) -> bool:
    """Whether an earlier run finished this take: its request metadata (written last) is there and asks for the same.

    Raises ValueError when a finished take of another request (other seed, checkpoint, ...) holds the name."""
    if not metadata_path.is_file():
        return False
    try:
        earlier = json.loads(metadata_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{metadata_path}: unreadable request metadata of an earlier take ({e})") from e
    asked = json.loads(json.dumps(request))
    differing = sorted(k for k in asked.keys() | earlier.keys() if asked.get(k) != earlier.get(k))
    if differing:
        raise ValueError(f"{metadata_path}: an earlier take of another request ({', '.join(differing)} differ) has "
                         "this name; remove it or generate into another --out")
    return True
