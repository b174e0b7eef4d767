"""Over-seed statistics of `dtl compare`: the 95 % confidence interval of a variant's mean, and whether its
difference from the reference variant is significant by a paired t-test over the seeds both ran.

Pairing by seed takes out what a seed does to both variants alike (data order, initialisation), which an unpaired
test would count as noise. With 3 seeds the test has 2 degrees of freedom: only consistent differences pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

ALPHA = 0.05
TEST_NAME = "paired t-test over seeds (two-sided, scipy.stats.ttest_rel)"


def interval95(values: list[float]) -> float | None:
    """Half-width of the 95 % confidence interval of the mean (Student t, n - 1 degrees of freedom); None for
    fewer than two values."""
    n = len(values)
    if n < 2:
        return None
    return float(stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / math.sqrt(n))


@dataclass(frozen=True)
class PairedTest:
    """A paired t-test of one variant against the reference over `n` shared seeds."""

    n: int
    mean_difference: float
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA


def paired_over_seeds(ours: dict[Any, float], reference: dict[Any, float]) -> PairedTest | None:
    """The test over the seeds both variants ran ({seed: value} each); None with fewer than two shared seeds.
    Differences identical on every seed give p = 0 when they are not zero (the t statistic is infinite) and 1
    when they are."""
    shared = sorted(set(ours) & set(reference), key=str)
    if len(shared) < 2:
        return None
    a = np.array([ours[s] for s in shared], dtype=float)
    b = np.array([reference[s] for s in shared], dtype=float)
    differences = a - b
    if np.ptp(differences) == 0:
        p = 1.0 if differences[0] == 0 else 0.0
    else:
        p = float(stats.ttest_rel(a, b).pvalue)
    return PairedTest(n=len(shared), mean_difference=float(differences.mean()), p_value=p)
