"""The statistics user studies report, from maintained packages: Wilson score intervals (statsmodels), the exact
two-sided binomial test (SciPy), percentile bootstrap intervals of a mean (SciPy) and Krippendorff's alpha (the
`krippendorff` package)."""

from __future__ import annotations

import math

import krippendorff
import numpy as np
from scipy.stats import binomtest, bootstrap
from statsmodels.stats.proportion import proportion_confint

CONFIDENCE = 0.95


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    low, high = proportion_confint(successes, n, alpha=1 - confidence, method="wilson")
    return float(low), float(high)


def binomial_p(successes: int, n: int) -> float:
    """Two-sided exact test of a preference rate against 1/2 (no preference)."""
    return float(binomtest(successes, n, 0.5, alternative="two-sided").pvalue) if n else math.nan


def bootstrap_mean_interval(values: list[float] | np.ndarray, seed: int, resamples: int = 10_000,
                            confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (resampling the ratings); equal ratings give a zero-width one."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return math.nan, math.nan
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    result = bootstrap((values,), np.mean, n_resamples=resamples, confidence_level=confidence, method="percentile",
                       rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def agreement_alpha(ratings: np.ndarray, level: str) -> float | None:
    """Krippendorff's alpha of a (raters, units) array with NaN where a rater did not judge a unit; None when it is
    undefined (fewer than two raters on any unit, or a single value throughout)."""
    ratings = np.asarray(ratings, dtype=float)
    pairable = (np.sum(~np.isnan(ratings), axis=0) >= 2).any() if ratings.size else False
    values = np.unique(ratings[~np.isnan(ratings)])
    if ratings.shape[0] < 2 or not pairable or len(values) < 2:
        return None
    return float(krippendorff.alpha(reliability_data=ratings, level_of_measurement=level))
