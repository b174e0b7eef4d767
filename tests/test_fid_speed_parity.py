"""The fast Fréchet distance and the channels_last feature path give pytorch-fid's numbers on realistic inputs."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import skimage.filters
import torch
from PIL import Image
from pytorch_fid.fid_score import calculate_frechet_distance, get_activations

from inception_helpers import reference_inception, seeded_inception_home
from metrics.fid import FrechetInceptionDistance
from metrics.frechet import _range_factor, frechet_distance

# pytorch-fid 0.3.0 calls scipy's sqrtm(disp=False), which SciPy 1.17 deprecates; the reference is used as it is.
pytestmark = pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")

PHOTOS = (skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket())


def photo_crops(count: int, size: int, seed: int, blur: float = 0.0) -> np.ndarray:
    """(count, size, size, 3) float crops in [0, 1] of real photographs, optionally blurred."""
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(count):
        photo = PHOTOS[i % len(PHOTOS)]
        top, left = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
        crop = photo[top : top + size, left : left + size].astype(np.float64) / 255
        crops.append(skimage.filters.gaussian(crop, sigma=blur, channel_axis=-1) if blur else crop)
    return np.stack(crops)


def photo_features(count: int, dims: int, seed: int, blur: float = 0.0) -> np.ndarray:
    """Non-negative (count, dims) features of photo crops: a fixed random projection then ReLU, as a CNN's pool3.

    Their covariances have the decaying eigen-spectra of natural images and diagonals of ~0.25, so the Fréchet
    distances compared below are ~1-10 (a few % of the trace), not the ~1e-16 of a random-init Inception.
    """
    size = int(np.ceil(np.sqrt(dims / 3))) + 2
    projection = np.random.default_rng(1234).normal(size=(size * size * 3, dims)) / np.sqrt(size * size * 3)
    pixels = photo_crops(count, size, seed, blur).reshape(count, -1) * 2 - 1  # [-1, 1], as Inception's input
    return np.maximum(pixels @ projection, 0)


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(0), np.cov(features, rowvar=False)


def distance_from_samples(real: np.ndarray, fake: np.ndarray) -> float:
    """The same distance computed without any matrix square root, exact to float64 rounding.

    With centred samples A, B, S1 S2 = AᵀA BᵀB / ((n1-1)(n2-1)) has the nonzero eigenvalues of (A Bᵀ)(A Bᵀ)ᵀ, so
    tr((S1 S2)^½) is the sum of the singular values of A Bᵀ / √((n1-1)(n2-1)): a small SVD when samples are few.
    """
    a, b = real - real.mean(0), fake - fake.mean(0)
    scale = (len(a) - 1) * (len(b) - 1)
    trace_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(scale)
    diff = real.mean(0) - fake.mean(0)
    return float(diff @ diff + (a * a).sum() / (len(a) - 1) + (b * b).sum() / (len(b) - 1) - 2 * trace_sqrt)


def reference_and_ours(real: np.ndarray, fake: np.ndarray) -> tuple[float, float]:
    """pytorch-fid's distance and ours between the two feature sets; the reference must not be a rounding residue."""
    statistics = (*gaussian_statistics(real), *gaussian_statistics(fake))
    reference = float(calculate_frechet_distance(*statistics))
    assert reference > 1e-2 * np.trace(statistics[1]), "the sets must differ at a realistic scale"
    return reference, frechet_distance(*statistics)


# ---------------------------------------------------------------- Fréchet distance


@pytest.mark.parametrize("dims", [192, 768])
def test_frechet_matches_pytorch_fid_on_well_conditioned_statistics(dims):
    real = photo_features(3 * dims, dims, seed=0)
    fake = photo_features(3 * dims, dims, seed=1, blur=1.5)
    assert _range_factor(np.cov(real, rowvar=False)).shape == (dims, dims), "meant to be full rank"
    reference, ours = reference_and_ours(real, fake)
    assert ours == pytest.approx(reference, rel=1e-4)


@pytest.mark.parametrize(
    "real_count, fake_count",
    [(40, 300), (40, 2000)],
    ids=["both_covariances_singular", "one_covariance_singular"],
)
def test_frechet_matches_pytorch_fid_on_rank_deficient_covariances(real_count, fake_count):
    dims = 512
    real = photo_features(real_count, dims, seed=2)
    fake = photo_features(fake_count, dims, seed=3, blur=1.0)
    assert np.linalg.matrix_rank(np.cov(real, rowvar=False)) < dims
    reference, ours = reference_and_ours(real, fake)
    assert ours == pytest.approx(reference, rel=1e-4)
    # Closer to the exact value than pytorch-fid's sqrtm gets (~4e-6 relative here): its null space adds nothing.
    assert ours == pytest.approx(distance_from_samples(real, fake), rel=1e-10)
    assert frechet_distance(*gaussian_statistics(fake), *gaussian_statistics(real)) == pytest.approx(ours, rel=1e-10)


@pytest.mark.parametrize("count", [60, 1500], ids=["rank_deficient", "full_rank"])
def test_frechet_of_identical_distributions_is_zero(count):
    features = photo_features(count, 512, seed=4)
    mu, sigma = gaussian_statistics(features)
    scale = np.trace(sigma)
    assert scale > 1.0
    assert abs(calculate_frechet_distance(mu, sigma, mu, sigma)) < 1e-5 * scale
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * scale


def test_frechet_takes_tensors_and_arrays_alike():
    real, fake = photo_features(300, 64, seed=5), photo_features(300, 64, seed=6, blur=2.0)
    statistics = (*gaussian_statistics(real), *gaussian_statistics(fake))
    as_tensors = [torch.from_numpy(x) for x in statistics]
    assert frechet_distance(*as_tensors) == pytest.approx(frechet_distance(*statistics), rel=1e-12)
    as_float32 = [torch.from_numpy(x).float() for x in statistics]
    assert frechet_distance(*as_float32) == pytest.approx(frechet_distance(*statistics), rel=1e-4)


def test_frechet_rejects_bad_statistics():
    mu, sigma = gaussian_statistics(photo_features(100, 16, seed=7))
    with pytest.raises(ValueError, match="mu1 and mu2"):
        frechet_distance(mu, sigma, mu[:8], sigma)
    with pytest.raises(ValueError, match=r"sigma2 must be \(16, 16\)"):
        frechet_distance(mu, sigma, mu, sigma[:8, :8])
    with pytest.raises(ValueError, match="sigma1 contains NaN"):
        frechet_distance(mu, np.where(np.eye(16) > 0, np.nan, sigma), mu, sigma)
    skewed = sigma.copy()
    skewed[0, 1] += 1.0
    with pytest.raises(ValueError, match="sigma2 is not a covariance"):
        frechet_distance(mu, sigma, mu, skewed)


def test_metric_compute_matches_pytorch_fid_on_768_d_features(random_inception_home):
    real = photo_features(200, 768, seed=8)
    fake = photo_features(150, 768, seed=9, blur=1.0)
    reference, _ = reference_and_ours(real, fake)
    metric = FrechetInceptionDistance(weights=reference_inception(random_inception_home, 768), dims=768)
    for chunk in np.array_split(real, 3):
        metric.update(torch.from_numpy(chunk), real=True)
    metric.update(torch.from_numpy(fake), real=False)
    assert float(metric.compute()) == pytest.approx(reference, rel=1e-4)


# ---------------------------------------------------------------- features


@pytest.fixture(scope="module")
def random_inception_home(tmp_path_factory):
    return seeded_inception_home(tmp_path_factory.mktemp("torch_home"))


def test_channels_last_features_equal_get_activations(random_inception_home, tmp_path):
    images = (photo_crops(3, 80, seed=10) * 255).round().astype(np.uint8)
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
    files = sorted(tmp_path.glob("*.png"))
    reference = get_activations(files, reference_inception(random_inception_home, 2048), batch_size=3, num_workers=0)

    model = reference_inception(random_inception_home, 2048)
    weights_before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    metric = FrechetInceptionDistance(weights=model)
    batch = torch.from_numpy(images).permute(0, 3, 1, 2)
    features = metric.features(batch).numpy()
    assert np.abs(reference).mean() > 1e-2, "features near zero would make this comparison vacuous"
    assert np.linalg.norm(features - reference) / np.linalg.norm(reference) < 1e-5
    assert all(torch.equal(weights_before[name], tensor) for name, tensor in model.state_dict().items())
    assert model.blocks[0][0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    # float input in [0, 1] is the same image as uint8 input
    assert np.array_equal(metric.features(batch.float() / 255).numpy(), features)
