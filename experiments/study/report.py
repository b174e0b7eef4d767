"""A study's analysis: attention-check exclusions first, then per criterion the pairwise preference rates (2afc) or
mean opinion scores (mos), inter-rater agreement, and each participant's time on task.

Analysed are the participants who completed every trial and failed at most `max_failed_checks` attention checks;
the others are listed with the reason. Attention checks never enter the statistics.
"""

from __future__ import annotations

import itertools
import statistics as stats
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from experiments.study.statistics import (agreement_alpha, binomial_p, bootstrap_mean_interval,
                                          wilson_interval)


@dataclass(frozen=True)
class ParticipantSummary:
    number: int
    answered: int
    total: int
    checks_passed: int
    checks_failed: int
    minutes: float | None  # first trial shown to last answer
    median_trial_seconds: float | None
    excluded: str  # "" when analysed, else why not


@dataclass(frozen=True)
class Preference:
    criterion: str
    method_a: str
    method_b: str
    n: int
    wins_a: int
    rate_a: float
    low: float
    high: float
    p_value: float


@dataclass(frozen=True)
class Opinion:
    criterion: str
    method: str
    n: int
    mean: float
    std: float
    low: float
    high: float


@dataclass
class StudyReport:
    study: str
    design: str
    methods: list[str]
    criteria: list[str]
    participants: list[ParticipantSummary]
    preferences: list[Preference] = field(default_factory=list)
    opinions: list[Opinion] = field(default_factory=list)
    agreement: dict[str, float | None] = field(default_factory=dict)
    max_failed_checks: int = 0
    analysed_rows: list[dict] = field(default_factory=list)

    @property
    def analysed(self) -> list[int]:
        return [p.number for p in self.participants if not p.excluded]


def _time(value: str) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def summarise_participant(number: int, total: int, rows: list[dict], max_failed_checks: int) -> ParticipantSummary:
    checks = [r for r in rows if r["kind"] == "attention"]
    passed = sum(r["choice"] == r["expected"] for r in checks)
    failed = len(checks) - passed
    shown = [t for t in (_time(r["shown_at"]) for r in rows) if t]
    answered = [_time(r["answered_at"]) for r in rows]
    minutes = (max(answered) - min(shown)).total_seconds() / 60 if shown and answered else None
    seconds = [r["seconds"] for r in rows if r["seconds"] != ""]
    if len(rows) < total:
        excluded = f"incomplete ({len(rows)} of {total} answered)"
    elif failed > max_failed_checks:
        excluded = f"failed {failed} of {len(checks)} attention checks"
    else:
        excluded = ""
    return ParticipantSummary(number, len(rows), total, passed, failed, minutes,
                              stats.median(seconds) if seconds else None, excluded)


def preferences(rows: list[dict], methods: list[str], criteria: list[str], raters: list[int]
                ) -> tuple[list[Preference], dict[str, float | None]]:
    out, agreement = [], {}
    for criterion in criteria:
        of_criterion = [r for r in rows if r["kind"] == "pair" and r["criterion"] == criterion]
        units: dict[tuple[str, str, str], dict[int, float]] = {}
        for a, b in itertools.combinations(methods, 2):
            judged = [r for r in of_criterion if {r["left"], r["right"]} == {a, b}]
            wins = sum(r["chosen"] == a for r in judged)
            low, high = wilson_interval(wins, len(judged))
            out.append(Preference(criterion, a, b, len(judged), wins, wins / len(judged) if judged else float("nan"),
                                  low, high, binomial_p(wins, len(judged))))
            for r in judged:
                units.setdefault((r["clip"], a, b), {})[r["participant"]] = 1.0 if r["chosen"] == a else 0.0
        agreement[criterion] = _alpha(units, raters, "nominal")
    return out, agreement


def opinions(rows: list[dict], methods: list[str], criteria: list[str], raters: list[int], seed: int,
             resamples: int) -> tuple[list[Opinion], dict[str, float | None]]:
    out, agreement = [], {}
    for criterion in criteria:
        of_criterion = [r for r in rows if r["kind"] == "rating" and r["criterion"] == criterion]
        units: dict[tuple[str, str], dict[int, float]] = {}
        for method in methods:
            ratings = [float(r["rating"]) for r in of_criterion if r["left"] == method]
            low, high = bootstrap_mean_interval(ratings, seed, resamples)
            out.append(Opinion(criterion, method, len(ratings), float(np.mean(ratings)) if ratings else float("nan"),
                               float(np.std(ratings, ddof=1)) if len(ratings) > 1 else float("nan"), low, high))
            for r in of_criterion:
                if r["left"] == method:
                    units.setdefault((r["clip"], method), {})[r["participant"]] = float(r["rating"])
        agreement[criterion] = _alpha(units, raters, "ordinal")
    return out, agreement


def _alpha(units: dict, raters: list[int], level: str) -> float | None:
    keys = sorted(units)
    matrix = np.full((len(raters), len(keys)), np.nan)
    for j, key in enumerate(keys):
        for i, rater in enumerate(raters):
            if rater in units[key]:
                matrix[i, j] = units[key][rater]
    return agreement_alpha(matrix, level)


def analyse(study: str, design: str, methods: list[str], criteria: list[str], totals: dict[int, int],
            rows: list[dict], max_failed_checks: int = 0, seed: int = 0, resamples: int = 10_000) -> StudyReport:
    """`totals`: each participant's number of trials; `rows`: results.study_answers of the study."""
    by_participant = {number: [r for r in rows if r["participant"] == number] for number in totals}
    summaries = [summarise_participant(n, totals[n], by_participant[n], max_failed_checks) for n in sorted(totals)]
    raters = [s.number for s in summaries if not s.excluded]
    analysed_rows = [r for r in rows if r["participant"] in raters and r["kind"] != "attention"]
    report = StudyReport(study, design, methods, criteria, summaries, max_failed_checks=max_failed_checks,
                         analysed_rows=analysed_rows)
    if design == "2afc":
        report.preferences, report.agreement = preferences(analysed_rows, methods, criteria, raters)
    else:
        report.opinions, report.agreement = opinions(analysed_rows, methods, criteria, raters, seed, resamples)
    return report
