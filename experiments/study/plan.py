"""The balanced trial plan of a user study: which videos each participant sees, on which side, in which order.

Every participant judges every (criterion, clip, method pair) of a `2afc` study, or every (criterion, clip,
method) of a `mos` study, once. Counterbalancing:

- sides: the pair at index c of the full list is shown flipped for participant p when (c + p) is odd, so each
  pair/clip is seen as often on the left as on the right over every two participants, and each participant sees
  half of the trials flipped;
- order: participants 2k and 2k+1 share one seeded random order, the second in reverse, so every trial's mean
  serial position is the same over each two participants (reverse counterbalancing);
- attention checks: the original video of a clip against the same video with its audio delayed by
  ATTENTION_SHIFT_FRAMES, asked for lip sync, inserted at seeded positions after the first trial; the in-sync
  video alternates sides. Clips and methods of the checks rotate over participants.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

DESIGNS = ("2afc", "mos")
CRITERIA = ("lip_sync", "emotion", "realism", "identity")
ATTENTION_SHIFT_FRAMES = 15
ATTENTION_CRITERION = "lip_sync"
KINDS = ("pair", "rating", "attention")


@dataclass(frozen=True)
class Shown:
    """One video of a trial: a method's render of a clip, or (shifted) that render with its audio delayed."""

    method: str
    clip: str
    shifted: bool = False


@dataclass(frozen=True)
class PlannedTrial:
    kind: str  # "pair" (2afc), "rating" (mos) or "attention" (a 2afc check with a known answer)
    criterion: str
    clip: str
    shown: tuple[Shown, ...]  # left to right
    expected: int | None = None  # attention checks: the index in `shown` of the in-sync video


class PlanError(ValueError):
    """A study that cannot be planned as asked."""


def method_pairs(methods: list[str]) -> list[tuple[str, str]]:
    """Unordered pairs in the order the methods were given: (m0, m1), (m0, m2), ..., (m1, m2), ..."""
    return list(itertools.combinations(methods, 2))


def base_trials(design: str, methods: list[str], clips: list[str], criteria: list[str]) -> list[PlannedTrial]:
    """The full design in canonical order, every pair (2afc) or method (mos) left to right as given."""
    if design == "2afc":
        return [PlannedTrial("pair", criterion, clip, (Shown(a, clip), Shown(b, clip)))
                for criterion in criteria for clip in clips for a, b in method_pairs(methods)]
    return [PlannedTrial("rating", criterion, clip, (Shown(m, clip),))
            for criterion in criteria for clip in clips for m in methods]


def attention_trials(participant: int, count: int, methods: list[str], clips: list[str]) -> list[PlannedTrial]:
    checks = []
    for i in range(count):
        clip = clips[(participant * count + i) % len(clips)]
        method = methods[(participant * count + i) % len(methods)]
        original, shifted = Shown(method, clip), Shown(method, clip, shifted=True)
        in_sync_left = (participant + i) % 2 == 0
        shown = (original, shifted) if in_sync_left else (shifted, original)
        checks.append(PlannedTrial("attention", ATTENTION_CRITERION, clip, shown, expected=0 if in_sync_left else 1))
    return checks


def attention_videos(participants: int, count: int, methods: list[str], clips: list[str]) -> set[Shown]:
    """The shifted videos the plan's attention checks need."""
    return {s for p in range(participants) for t in attention_trials(p, count, methods, clips) for s in t.shown
            if s.shifted}


def validate(design: str, methods: list[str], clips: list[str], criteria: list[str], participants: int,
             attention_checks: int) -> None:
    if design not in DESIGNS:
        raise PlanError(f"unknown design {design!r}: choose one of {', '.join(DESIGNS)}")
    if len(methods) < 2:
        raise PlanError(f"a study compares at least two methods, got {len(methods)}")
    if len(set(methods)) != len(methods):
        raise PlanError(f"method names repeat: {methods}")
    if not clips:
        raise PlanError("no clips to show")
    unknown = [c for c in criteria if c not in CRITERIA]
    if unknown or not criteria:
        raise PlanError(f"criteria must be among {', '.join(CRITERIA)}, got {criteria}")
    if len(set(criteria)) != len(criteria):
        raise PlanError(f"criteria repeat: {criteria}")
    if participants < 1:
        raise PlanError(f"at least one participant, got {participants}")
    if attention_checks < 0:
        raise PlanError(f"attention checks cannot be negative, got {attention_checks}")


def participant_plan(design: str, methods: list[str], clips: list[str], criteria: list[str], participant: int,
                     seed: int, attention_checks: int = 2) -> list[PlannedTrial]:
    """The trials of participant number `participant` (0-based), in the order shown."""
    validate(design, methods, clips, criteria, participant + 1, attention_checks)
    trials = [PlannedTrial(t.kind, t.criterion, t.clip, t.shown[::-1]) if (c + participant) % 2 else t
              for c, t in enumerate(base_trials(design, methods, clips, criteria))]
    rng = np.random.default_rng([seed, participant // 2])
    order = rng.permutation(len(trials))
    if participant % 2:
        order = order[::-1]
    ordered = [trials[i] for i in order]
    checks = attention_trials(participant, attention_checks, methods, clips)
    check_rng = np.random.default_rng([seed, participant, 1])
    slots = sorted(check_rng.choice(np.arange(1, len(ordered) + 1), size=len(checks),
                                    replace=len(checks) > len(ordered)))
    for offset, (slot, check) in enumerate(zip(slots, checks)):
        ordered.insert(int(slot) + offset, check)
    return ordered


def study_plan(design: str, methods: list[str], clips: list[str], criteria: list[str], participants: int,
               seed: int, attention_checks: int = 2) -> list[list[PlannedTrial]]:
    validate(design, methods, clips, criteria, participants, attention_checks)
    return [participant_plan(design, methods, clips, criteria, p, seed, attention_checks)
            for p in range(participants)]
