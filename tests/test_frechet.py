"""The Fréchet distance against closed forms on small statistics: fast, numpy and scipy only.

`tests/test_fid_speed_parity.py` compares it with pytorch-fid on photo features (slow); these pin its values,
its refusals and its range factors on inputs whose answer is known exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from metrics.frechet import _range_factor, frechet_distance, trace_sqrt_product


def random_covariance(dims: int, rank: int, seed: int, scale: float = 1.0) -> np.ndarray:
    """A symmetric PSD (dims × dims) matrix of the given rank, eigenvalues in [0.1, 2] · scale."""
    rng = np.random.default_rng(seed)
    basis = scipy.stats.ortho_group.rvs(dims, random_state=rng)[:, :rank]
    sigma = basis @ np.diag(rng.uniform(0.1, 2.0, rank) * scale) @ basis.T
    return (sigma + sigma.T) / 2


def distance_by_sqrtm(mu1, sigma1, mu2, sigma2) -> float:
    """The textbook formula with scipy's general matrix square root: exact enough on small full-rank inputs."""
    diff = mu1 - mu2
    cross = scipy.linalg.sqrtm(sigma1 @ sigma2).real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(cross))


def test_diagonal_covariances_give_the_closed_form():
    # With commuting (diagonal) covariances tr((S1 S2)^½) = Σ sqrt(a_i b_i), so the distance is
    # ‖mu1 − mu2‖² + Σ (sqrt(a_i) − sqrt(b_i))².
    mu1, mu2 = np.array([0.5, -1.0, 2.0, 0.0]), np.array([1.5, 1.0, 2.0, -3.0])
    a, b = np.array([0.04, 0.5, 3.0, 9.0]), np.array([0.25, 2.0, 3.0, 1.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    assert trace_sqrt_product(np.diag(a), np.diag(b)) == pytest.approx(np.sqrt(a * b).sum(), rel=1e-12)


@pytest.mark.parametrize("std1, std2", [(1.0, 3.0), (0.2, 0.2), (2.5, 0.5)])
def test_one_dimensional_gaussians_give_the_difference_of_their_deviations(std1, std2):
    # In one dimension the distance is (mu1 − mu2)² + (σ1 − σ2)²; the cross product is a single number.
    distance = frechet_distance(np.array([1.0]), np.array([[std1**2]]), np.array([-0.5]), np.array([[std2**2]]))
    assert distance == pytest.approx(1.5**2 + (std1 - std2) ** 2, rel=1e-12, abs=1e-15)


def test_statistics_of_zero_width_features_are_at_distance_zero():
    empty_mu, empty_sigma = np.zeros(0), np.zeros((0, 0))
    assert frechet_distance(empty_mu, empty_sigma, empty_mu, empty_sigma) == 0.0


@pytest.mark.parametrize("scale", [1e-4, 1.0, 1e4])
def test_full_rank_covariances_match_the_matrix_square_root(scale):
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6) * np.sqrt(scale), rng.normal(size=6) * np.sqrt(scale)
    sigma1, sigma2 = random_covariance(6, 6, seed=1, scale=scale), random_covariance(6, 6, seed=2, scale=scale)
    expected = distance_by_sqrtm(mu1, sigma1, mu2, sigma2)
    assert expected > 0.1 * scale, "the two Gaussians must differ at the scale of their covariances"
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu2, sigma2, mu1, sigma1) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("rank1, rank2", [(2, 5), (5, 2), (3, 3), (8, 1), (1, 1)])
def test_rank_deficient_covariances_match_the_singular_values_of_the_cross_product(rank1, rank2):
    # Covariances S = C Cᵀ of a few samples: tr((S1 S2)^½) is the sum of the singular values of C2ᵀ C1.
    rng = np.random.default_rng(rank1 * 10 + rank2)
    c1, c2 = rng.normal(size=(8, rank1)), rng.normal(size=(8, rank2))
    sigma1, sigma2 = c1 @ c1.T, c2 @ c2.T
    exact = np.linalg.svd(c2.T @ c1, compute_uv=False).sum()
    assert trace_sqrt_product(sigma1, sigma2) == pytest.approx(exact, rel=1e-10)
    mu = rng.normal(size=8)
    expected = np.trace(sigma1) + np.trace(sigma2) - 2 * exact
    assert frechet_distance(mu, sigma1, mu, sigma2) == pytest.approx(expected, rel=1e-10)


def test_identical_gaussians_are_at_distance_zero_also_when_singular():
    for rank in (8, 3):
        sigma = random_covariance(8, rank, seed=rank)
        mu = np.arange(8.0)
        assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-12 * np.trace(sigma)


def test_covariances_with_crossing_ranges_never_give_nan():
    # S1 spans {e1, e2}, S2 spans {e1, e3}, rotated at random: the cross product is singular, so rounding makes some
    # of its eigenvalues slightly negative; they count as 0 (tr((S1 S2)^½) = 1 exactly; the square root of a
    # rounding-level eigenvalue, ~1e-8, is the error left).
    dims = 5
    for seed in range(20):
        rotation = scipy.stats.ortho_group.rvs(dims, random_state=seed)
        e1, e2, e3 = rotation[:, 0], rotation[:, 1], rotation[:, 2]
        sigma1, sigma2 = np.outer(e1, e1) + np.outer(e2, e2), np.outer(e1, e1) + np.outer(e3, e3)
        assert trace_sqrt_product(sigma1, sigma2) == pytest.approx(1.0, abs=1e-7)
        assert frechet_distance(np.zeros(dims), sigma1, np.zeros(dims), sigma2) == pytest.approx(2.0, abs=1e-7)


def test_a_zero_covariance_adds_only_the_other_trace():
    sigma = random_covariance(4, 4, seed=3)
    mu1, mu2 = np.zeros(4), np.array([1.0, 2.0, 0.0, 0.0])
    assert trace_sqrt_product(np.zeros((4, 4)), sigma) == 0.0
    assert frechet_distance(mu1, np.zeros((4, 4)), mu2, sigma) == pytest.approx(5.0 + np.trace(sigma), rel=1e-12)
    assert frechet_distance(mu1, np.zeros((4, 4)), mu2, np.zeros((4, 4))) == pytest.approx(5.0, rel=1e-12)


@pytest.mark.parametrize("rank", [6, 4, 1])
def test_range_factor_reproduces_the_covariance_with_its_rank_as_width(rank):
    sigma = random_covariance(6, rank, seed=rank)
    factor = _range_factor(sigma)
    assert factor.shape == (6, rank)
    np.testing.assert_allclose(factor @ factor.T, sigma, atol=1e-12)


def test_tensors_arrays_and_lists_give_the_same_distance():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    sigma1, sigma2 = random_covariance(3, 3, seed=4), random_covariance(3, 3, seed=5)
    expected = distance_by_sqrtm(mu1, sigma1, mu2, sigma2)
    tensors = [torch.tensor(x, requires_grad=True) for x in (mu1, sigma1, mu2, sigma2)]
    assert frechet_distance(*tensors) == pytest.approx(expected, rel=1e-9)
    lists = [x.tolist() for x in (mu1, sigma1, mu2, sigma2)]
    assert frechet_distance(*lists) == pytest.approx(expected, rel=1e-9)


def test_bad_shapes_are_refused_naming_the_argument():
    mu, sigma = np.zeros(4), np.eye(4)
    for short_mu in ((mu, sigma, mu[:3], sigma), (mu[:3], sigma, mu, sigma)):
        with pytest.raises(ValueError, match="mu1 and mu2 must be vectors of one length"):
            frechet_distance(*short_mu)
    for not_vectors in (np.zeros((4, 1)), np.zeros((4, 4)), np.float64(1.0)):
        with pytest.raises(ValueError, match="mu1 and mu2 must be vectors of one length"):
            frechet_distance(not_vectors, sigma, not_vectors, sigma)
    for name, wrong in (("sigma1", np.eye(3)), ("sigma1", np.eye(5)), ("sigma2", np.eye(3)), ("sigma2", np.eye(5))):
        arguments = [mu, sigma, mu, sigma]
        arguments[1 if name == "sigma1" else 3] = wrong
        with pytest.raises(ValueError, match=rf"{name} must be \(4, 4\) to match the means, got \({len(wrong)}, "):
            frechet_distance(*arguments)


@pytest.mark.parametrize("name, position", [("mu1", 0), ("sigma1", 1), ("mu2", 2), ("sigma2", 3)])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_statistics_are_refused_naming_the_argument(name, position, bad):
    arguments = [np.zeros(3), np.eye(3), np.zeros(3), np.eye(3)]
    arguments[position] = arguments[position].copy()
    arguments[position].flat[0] = bad
    with pytest.raises(ValueError, match=f"{name} contains NaN or infinite values"):
        frechet_distance(*arguments)


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_asymmetry_is_refused_above_a_relative_tolerance_and_symmetrised_below_it(scale):
    sigma = random_covariance(4, 4, seed=6, scale=scale)
    largest = np.abs(sigma).max()
    for name, position in (("sigma1", 1), ("sigma2", 3)):
        skewed = sigma.copy()
        skewed[0, 1] += 1e-5 * largest
        arguments = [np.zeros(4), sigma, np.zeros(4), sigma]
        arguments[position] = skewed
        with pytest.raises(ValueError, match=f"{name} is not a covariance"):
            frechet_distance(*arguments)

    # Rounding-level asymmetry is accepted, and the matrix is used as its symmetric part.
    nudged = sigma.copy()
    nudged[0, 1] += 1e-7 * largest
    symmetric_part = (nudged + nudged.T) / 2
    expected = frechet_distance(np.zeros(4), np.eye(4) * scale, np.zeros(4), symmetric_part)
    assert frechet_distance(np.zeros(4), np.eye(4) * scale, np.zeros(4), nudged) == pytest.approx(expected, rel=1e-12)
    assert expected != pytest.approx(frechet_distance(np.zeros(4), np.eye(4) * scale, np.zeros(4), sigma), rel=1e-12)
