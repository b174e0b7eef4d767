"""The study plan is balanced: every pair/clip/criterion once per participant, sides and serial positions
counterbalanced over each two participants, attention checks with a known in-sync video, reproducible by seed."""

from __future__ import annotations

from collections import Counter

import pytest

from experiments.study.plan import PlanError, base_trials, participant_plan, study_plan

METHODS = ["ours", "sadtalker", "wav2lip"]
CLIPS = ["c0", "c1", "c2", "c3"]
CRITERIA = ["lip_sync", "realism"]


def key(trial) -> tuple:
    return trial.criterion, trial.clip, frozenset(s.method for s in trial.shown)


def judged(plan):
    return [t for t in plan if t.kind != "attention"]


@pytest.mark.parametrize("design", ["2afc", "mos"])
def test_every_participant_judges_the_full_design_once(design):
    full = Counter(key(t) for t in base_trials(design, METHODS, CLIPS, CRITERIA))
    expected_size = len(CRITERIA) * len(CLIPS) * (3 if design == "2afc" else len(METHODS))
    assert sum(full.values()) == expected_size and set(full.values()) == {1}
    for plan in study_plan(design, METHODS, CLIPS, CRITERIA, participants=5, seed=3, attention_checks=2):
        assert Counter(key(t) for t in judged(plan)) == full
        pairs = Counter(frozenset(s.method for s in t.shown) for t in judged(plan))
        assert len(set(pairs.values())) == 1  # each pair (or method) equally often
        clips = Counter(t.clip for t in judged(plan))
        assert len(set(clips.values())) == 1


def test_sides_are_counterbalanced_over_each_two_participants():
    plans = study_plan("2afc", METHODS, CLIPS, CRITERIA, participants=4, seed=1, attention_checks=0)
    for first, second in ((0, 1), (2, 3)):
        sides = Counter((key(t), t.shown[0].method) for p in (first, second) for t in plans[p])
        assert set(sides.values()) == {1}, "each pair shown once with each method on the left"
    for plan in plans:
        left_first = sum(t.shown[0].method == sorted(s.method for s in t.shown)[0] for t in plan)
        assert abs(2 * left_first - len(plan)) <= 1


def _mean_positions(plans: list[list]) -> set[float]:
    positions = {}
    for plan in plans:
        for i, t in enumerate(judged(plan)):
            positions.setdefault(key(t), []).append(i)
    return {sum(p) / len(p) for p in positions.values()}


def test_serial_positions_are_counterbalanced_and_a_plan_without_reversal_is_not():
    plans = study_plan("2afc", METHODS, CLIPS, CRITERIA, participants=2, seed=7, attention_checks=2)
    assert _mean_positions(plans) == {(len(judged(plans[0])) - 1) / 2}
    # the broken variant: two participants with independent random orders (0 and 2 share no permutation)
    independent = [participant_plan("2afc", METHODS, CLIPS, CRITERIA, p, seed=7, attention_checks=2) for p in (0, 2)]
    assert len(_mean_positions(independent)) > 1


def test_attention_checks_pair_a_video_with_its_shifted_copy_after_the_first_trial():
    plans = study_plan("mos", METHODS, CLIPS, CRITERIA, participants=6, seed=0, attention_checks=2)
    sides = Counter()
    for plan in plans:
        checks = [(i, t) for i, t in enumerate(plan) if t.kind == "attention"]
        assert len(checks) == 2 and all(i > 0 for i, _ in checks)
        for _, t in checks:
            original, other = t.shown[t.expected], t.shown[1 - t.expected]
            assert not original.shifted and other.shifted
            assert (original.method, original.clip) == (other.method, other.clip) and t.criterion == "lip_sync"
            sides[t.expected] += 1
    assert sides[0] == sides[1]


def test_the_seed_decides_the_order():
    same = [study_plan("2afc", METHODS, CLIPS, CRITERIA, 2, seed=5) for _ in range(2)]
    assert same[0] == same[1]
    assert study_plan("2afc", METHODS, CLIPS, CRITERIA, 2, seed=6) != same[0]


@pytest.mark.parametrize("args, problem", [
    (("3afc", METHODS, CLIPS, CRITERIA, 2), "unknown design"),
    (("2afc", ["ours"], CLIPS, CRITERIA, 2), "at least two methods"),
    (("2afc", METHODS, [], CRITERIA, 2), "no clips"),
    (("2afc", METHODS, CLIPS, ["beauty"], 2), "criteria must be among"),
    (("2afc", METHODS, CLIPS, CRITERIA, 0), "at least one participant"),
])
def test_impossible_studies_are_refused(args, problem):
    with pytest.raises(PlanError, match=problem):
        study_plan(*args, seed=0)
