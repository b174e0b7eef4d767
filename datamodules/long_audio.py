"""Long audio for evaluation: the held-out sentences of one speaker, emotion and level joined into clips of at least
`min_seconds` (longer than many generation windows), as one padded batch with the frames where clips were joined."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from datamodules.blendshape_dataset import BlendshapeWindowDataset


def _joined(dataset: BlendshapeWindowDataset, frames_needed: int, key) -> list[list[int]]:
    """Per group of clips (by `key`), its clips in sentence order up to `frames_needed` frames; groups too short
    are left out."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, clip in enumerate(dataset.clips):
        groups[key(clip)].append(i)
    chosen = []
    for group in sorted(groups):
        total, taken = 0, []
        for i in sorted(groups[group], key=lambda i: (dataset.clips[i].sentence, i)):
            taken.append(i)
            total += len(dataset.clips[i].blendshapes)
            if total >= frames_needed:
                chosen.append(taken)
                break
    return chosen


def _frames_by_speaker(dataset: BlendshapeWindowDataset) -> dict[str, int]:
    frames: dict[str, int] = defaultdict(int)
    for clip in dataset.clips:
        frames[clip.speaker] += len(clip.blendshapes)
    return frames


def long_audio_batch(dataset: BlendshapeWindowDataset, min_seconds: float = 20.0, fps: float = 25.0,
                     max_clips: int | None = None) -> dict[str, torch.Tensor]:
    """One batch item per (speaker, emotion, level) whose sentences last at least `min_seconds` together (in
    sentence order, joined until that length), or where none does, one per speaker; the conditions (style clip,
    initial expression, labels) are those of its first sentence. Adds `joins`: (B, T) True at the first frame of
    each joined sentence after the first."""
    frames_needed = int(np.ceil(min_seconds * fps))
    chosen = _joined(dataset, frames_needed, lambda c: (c.speaker, c.emotion, c.level))
    if not chosen:  # a small corpus: a speaker's sentences of every emotion, the conditions those of the first
        chosen = _joined(dataset, frames_needed, lambda c: (c.speaker,))
    if not chosen:
        raise ValueError(f"no held-out speaker has {min_seconds:g} s of sentences to join (the longest has "
                         f"{max(_frames_by_speaker(dataset).values(), default=0) / fps:.1f} s)")
    if max_clips is not None:
        chosen = chosen[:: max(len(chosen) // max_clips, 1)][:max_clips]
    first_item = {clip_index: item for item, (clip_index, start) in reversed(list(enumerate(dataset.items)))
                  if start == 0}
    items = []
    for group in chosen:
        item = dataset[first_item[group[0]]]
        clips = [dataset.clips[i] for i in group]
        joins = np.zeros(sum(len(c.blendshapes) for c in clips), dtype=bool)
        joins[np.cumsum([len(c.blendshapes) for c in clips])[:-1]] = True
        item.update(audio=torch.from_numpy(np.concatenate([c.audio for c in clips])),
                    blendshapes=torch.from_numpy(np.concatenate([c.blendshapes for c in clips])),
                    loudness=torch.from_numpy(np.concatenate([c.loudness for c in clips])),
                    joins=torch.from_numpy(joins))
        item["mask"] = torch.ones(len(joins), dtype=torch.bool)
        items.append(item)
    length = max(len(item["mask"]) for item in items)
    batch = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if values[0].ndim >= 1 and key in ("audio", "blendshapes", "loudness", "joins", "mask"):
            values = [torch.cat([v, v.new_zeros((length - len(v),) + v.shape[1:])]) for v in values]
        batch[key] = torch.stack(values)
    return batch
