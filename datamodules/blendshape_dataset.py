"""Windows of audio features and ARKit blendshapes with emotion, level, speaker, a style clip and the initial state."""

from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from dtl_foundation.mead import EMOTION_INDEX


@dataclass
class Clip:
    """One clip in memory: normalised audio features (T, C) and blendshapes (T, 52), frame-aligned."""

    clip_id: str
    speaker: str
    emotion: str
    level: int
    sentence: str
    audio: np.ndarray
    blendshapes: np.ndarray
    loudness: np.ndarray | None = None
    """(T,) mean log-mel level in dB per frame, the reference signal of audio-mouth sync."""

    def __post_init__(self) -> None:
        if len(self.audio) != len(self.blendshapes):
            raise ValueError(f"{self.clip_id}: {len(self.audio)} audio frames but {len(self.blendshapes)} "
                             "blendshape frames")
        if self.loudness is None:
            self.loudness = np.zeros(len(self.audio), np.float32)
        elif len(self.loudness) != len(self.audio):
            raise ValueError(f"{self.clip_id}: {len(self.loudness)} loudness frames but {len(self.audio)} audio frames")


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode())


def _window(array: np.ndarray, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """array[start:start+length], zero-padded at the end, and the mask of real frames."""
    piece = array[start:start + length]
    mask = np.zeros(length, dtype=bool)
    mask[:len(piece)] = True
    if len(piece) < length:
        piece = np.concatenate([piece, np.zeros((length - len(piece),) + array.shape[1:], array.dtype)])
    return piece, mask


class BlendshapeWindowDataset(Dataset):
    """Training draws one random window per clip per epoch; evaluation tiles every clip with fixed windows.

    The style clip is another sentence of the same speaker and emotion (the same level when there is one),
    drawn at random in training and fixed per clip in evaluation, so validation and test are deterministic.
    """

    def __init__(self, clips: list[Clip], speakers: list[str], *, window: int, style_frames: int,
                 train: bool) -> None:
        self.clips = clips
        self.window = window
        self.style_frames = style_frames
        self.train = train
        self.speaker_index = {s: i for i, s in enumerate(speakers)}
        self.style_candidates = self._style_candidates(clips)
        if train:
            self.items = [(i, -1) for i in range(len(clips))]
        else:
            self.items = [(i, start) for i, clip in enumerate(clips)
                          for start in range(0, max(len(clip.blendshapes) - 1, 1), window)]

    @staticmethod
    def _style_candidates(clips: list[Clip]) -> list[list[int]]:
        same_emotion: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, c in enumerate(clips):
            same_emotion[(c.speaker, c.emotion)].append(i)
        candidates = []
        for i, c in enumerate(clips):
            others = [j for j in same_emotion[(c.speaker, c.emotion)] if clips[j].sentence != c.sentence]
            same_level = [j for j in others if clips[j].level == c.level]
            candidates.append(same_level or others or [i])
        return candidates

    def __len__(self) -> int:
        return len(self.items)

    def _pick(self, n: int, key: str) -> int:
        return int(torch.randint(n, ()).item()) if self.train else _stable_hash(key) % n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        clip_index, start = self.items[index]
        clip = self.clips[clip_index]
        frames = len(clip.blendshapes)
        if start < 0:
            start = self._pick(max(frames - self.window, 0) + 1, clip.clip_id)
        audio, mask = _window(clip.audio, start, self.window)
        blendshapes, _ = _window(clip.blendshapes, start, self.window)
        loudness, _ = _window(clip.loudness, start, self.window)

        candidates = self.style_candidates[clip_index]
        style_clip = self.clips[candidates[self._pick(len(candidates), clip.clip_id + "/style")]]
        style_start = self._pick(max(len(style_clip.blendshapes) - self.style_frames, 0) + 1,
                                 clip.clip_id + "/style_start") if self.train else 0
        style, style_mask = _window(style_clip.blendshapes, style_start, self.style_frames)

        return {
            "audio": torch.from_numpy(audio),
            "blendshapes": torch.from_numpy(blendshapes),
            "mask": torch.from_numpy(mask),
            "loudness": torch.from_numpy(loudness),
            "init": torch.from_numpy(clip.blendshapes[start].copy()),
            "style": torch.from_numpy(style),
            "style_mask": torch.from_numpy(style_mask),
            "emotion": torch.tensor(EMOTION_INDEX[clip.emotion]),
            "level": torch.tensor(clip.level),
            "speaker": torch.tensor(self.speaker_index.get(clip.speaker, -1)),
            "clip_index": torch.tensor(clip_index),
            "start": torch.tensor(start),
        }

