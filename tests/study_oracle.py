"""The user-study statistics computed by hand from the database's rows, to check `dtl study report` against:
Wilson's score interval and the exact binomial test from their formulas, Krippendorff's alpha from its
coincidence matrix, a percentile bootstrap with NumPy."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from sqlalchemy import create_engine, text

Z95 = 1.959963984540054


def answered_rows(url: str, study: str) -> list[dict]:
    """Every answer of the study with the method name shown in each slot, by plain SQL."""
    query = text("""
        SELECT p.number AS participant, t.position AS position, t.kind AS kind, t.criterion AS criterion,
               c.name AS clip, t.expected AS expected, a.choice AS choice, a.rating AS rating,
               t.shown_at AS shown_at, a.answered_at AS answered_at, tm.slot AS slot, m.name AS method,
               v.shifted AS shifted
        FROM answer a JOIN trial t ON a.trial_id = t.id JOIN participant p ON t.participant_id = p.id
        JOIN study s ON p.study_id = s.id JOIN clip c ON t.clip_id = c.id
        JOIN trial_media tm ON tm.trial_id = t.id JOIN video v ON tm.video_id = v.id JOIN method m ON v.method_id = m.id
        WHERE s.name = :study ORDER BY p.number, t.position, tm.slot""")
    with create_engine(url).connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(query, {"study": study})]
    merged: dict[tuple, dict] = {}
    for r in rows:
        entry = merged.setdefault((r["participant"], r["position"]), {**r, "methods": []})
        entry["methods"].append(r["method"])
    return list(merged.values())


def wilson(k: int, n: int) -> tuple[float, float]:
    p = k / n
    centre = (p + Z95 ** 2 / (2 * n)) / (1 + Z95 ** 2 / n)
    half = Z95 / (1 + Z95 ** 2 / n) * math.sqrt(p * (1 - p) / n + Z95 ** 2 / (4 * n * n))
    return centre - half, centre + half


def binomial_two_sided(k: int, n: int) -> float:
    pmf = [math.comb(n, i) / 2 ** n for i in range(n + 1)]
    return min(1.0, sum(q for q in pmf if q <= pmf[k] * (1 + 1e-7)))


def krippendorff_alpha(units: dict, metric: str) -> float | None:
    """units: {unit: {rater: value}}; metric "nominal" or "ordinal"; None when a single value was given (alpha is
    0/0 then)."""
    values = sorted({v for judged in units.values() for v in judged.values()})
    if len(values) < 2:
        return None
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for judged in units.values():
        vs = list(judged.values())
        m = len(vs)
        if m < 2:
            continue
        for i, a in enumerate(vs):
            for j, b in enumerate(vs):
                if i != j:
                    o[index[a], index[b]] += 1 / (m - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()

    def delta(c: int, k: int) -> float:
        if metric == "nominal":
            return float(c != k)
        low, high = min(c, k), max(c, k)
        return (n_c[low:high + 1].sum() - (n_c[c] + n_c[k]) / 2) ** 2

    observed = sum(o[c, k] * delta(c, k) for c in range(len(values)) for k in range(len(values)))
    expected = sum(n_c[c] * n_c[k] * delta(c, k) for c in range(len(values)) for k in range(len(values)))
    return 1 - (n - 1) * observed / expected


def percentile_bootstrap(values: list[float], resamples: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    data = np.asarray(values, float)
    means = data[rng.integers(0, len(data), (resamples, len(data)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def excluded_participants(rows: list[dict], totals: dict[int, int], max_failed: int = 0) -> set[int]:
    failed, answered = defaultdict(int), defaultdict(int)
    for r in rows:
        answered[r["participant"]] += 1
        if r["kind"] == "attention" and r["choice"] != r["expected"]:
            failed[r["participant"]] += 1
    return {p for p, total in totals.items() if answered[p] < total or failed[p] > max_failed}


def expected_preferences(analysed: list[dict], methods: list[str], criteria: list[str]
                         ) -> tuple[dict[tuple[str, str, str], dict], dict[str, float | None]]:
    """Per (criterion, A, B): n, A's wins, rate, Wilson interval, binomial p; per criterion the nominal alpha over
    units (clip, pair) with value 1 when A was preferred."""
    import itertools

    table, alphas = {}, {}
    for criterion in criteria:
        units = defaultdict(dict)
        for a, b in itertools.combinations(methods, 2):
            judged = [r for r in analysed if r["criterion"] == criterion and set(r["methods"]) == {a, b}]
            wins = sum(r["methods"][r["choice"]] == a for r in judged)
            low, high = wilson(wins, len(judged))
            table[(criterion, a, b)] = {"n": len(judged), "wins_a": wins, "rate_a": wins / len(judged), "low": low,
                                        "high": high, "p_value": binomial_two_sided(wins, len(judged))}
            for r in judged:
                units[(r["clip"], a, b)][r["participant"]] = int(r["methods"][r["choice"]] == a)
        alphas[criterion] = krippendorff_alpha(units, "nominal")
    return table, alphas
