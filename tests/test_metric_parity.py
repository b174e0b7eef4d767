"""The metrics give the reference packages' numbers on the same inputs and weights; the registry refuses bad files."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import lpips
import numpy as np
import pytest
import python_speech_features
import skimage.data
import skimage.filters
import skimage.metrics
import torch
import torchvision
from PIL import Image
from pytorch_fid.fid_score import calculate_frechet_distance, compute_statistics_of_path, get_activations

from inception_helpers import reference_inception, seeded_inception_home
from metrics.fid import FrechetInceptionDistance
from metrics.image_quality import SSIM, psnr
from metrics.lpips_metric import LPIPS, lpips_network
from dtl_foundation.media.mfcc import syncnet_mfcc, syncnet_mfcc_torch
from dtl_foundation.weights import (
    REGISTRY,
    MissingWeightsError,
    WeightsChecksumError,
    WeightsFile,
    check_all,
    resolve_weights,
    verified_path,
)


def relative_error(ours, reference) -> float:
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


# ---------------------------------------------------------------- images


def portrait_crops(count: int, size: int = 96, seed: int = 0) -> np.ndarray:
    """(count, size, size, 3) uint8 crops of real photographs (skimage's astronaut, chelsea, coffee)."""
    rng = np.random.default_rng(seed)
    photos = [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()]
    crops = []
    for i in range(count):
        photo = photos[i % len(photos)]
        top = rng.integers(0, photo.shape[0] - size)
        left = rng.integers(0, photo.shape[1] - size)
        crops.append(photo[top : top + size, left : left + size])
    return np.stack(crops)


def degraded(images: np.ndarray, seed: int = 1) -> np.ndarray:
    """Blurred and noisy versions, still uint8, so the two sets differ at realistic scale."""
    rng = np.random.default_rng(seed)
    out = []
    for image in images:
        blurred = skimage.filters.gaussian(image, sigma=1.5, channel_axis=-1, preserve_range=True)
        out.append(np.clip(blurred + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8))
    return np.stack(out)


def write_pngs(images: np.ndarray, folder) -> None:
    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")


def as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


# ---------------------------------------------------------------- FID


@pytest.fixture(scope="module")
def random_inception_home(tmp_path_factory):
    return seeded_inception_home(tmp_path_factory.mktemp("torch_home"))


def test_fid_pool3_features_and_statistics_match_pytorch_fid(random_inception_home, tmp_path):
    images = portrait_crops(8)
    folder = tmp_path / "real"
    write_pngs(images, folder)
    files = sorted(folder.glob("*.png"))
    reference_model = reference_inception(random_inception_home, 2048)
    reference_features = get_activations(files, reference_model, batch_size=len(files), dims=2048, num_workers=0)
    reference_mu, reference_sigma = compute_statistics_of_path(str(folder), reference_model, 50, 2048, "cpu", 0)

    metric = FrechetInceptionDistance(weights=reference_inception(random_inception_home, 2048))
    batch = as_tensor(images)
    features = metric.features(batch).numpy()
    assert np.abs(reference_features).mean() > 1e-2, "features near zero would make this comparison vacuous"
    assert relative_error(features, reference_features) < 1e-4
    metric.update(batch[:3], real=True)
    metric.update(batch[3:], real=True)
    mu, sigma = metric.statistics(real=True)
    assert relative_error(mu, reference_mu) < 1e-4
    assert relative_error(sigma, reference_sigma) < 1e-4


def test_fid_on_image_folders_matches_pytorch_fid(random_inception_home, tmp_path):
    # 64-d first-max-pool features keep the test fast; the accumulation and distance code paths are the pool3 ones.
    real, fake = portrait_crops(12, seed=0), degraded(portrait_crops(12, seed=5))
    write_pngs(real, tmp_path / "real")
    write_pngs(fake, tmp_path / "fake")
    reference_model = reference_inception(random_inception_home, 64)
    mu_real, sigma_real = compute_statistics_of_path(str(tmp_path / "real"), reference_model, 50, 64, "cpu", 0)
    mu_fake, sigma_fake = compute_statistics_of_path(str(tmp_path / "fake"), reference_model, 50, 64, "cpu", 0)
    reference_fid = calculate_frechet_distance(mu_real, sigma_real, mu_fake, sigma_fake)

    metric = FrechetInceptionDistance(weights=reference_inception(random_inception_home, 64), dims=64)
    metric.update(as_tensor(real[:7]), real=True)
    metric.update(as_tensor(real[7:]), real=True)
    metric.update(as_tensor(fake), real=False)
    assert reference_fid > 1e-3
    assert float(metric.compute()) == pytest.approx(reference_fid, rel=1e-4)


def test_frechet_distance_matches_pytorch_fid_on_realistic_statistics(random_inception_home):
    rng = np.random.default_rng(0)
    dims = 64

    def gaussian_features(offset: float, count: int) -> np.ndarray:
        mixing = rng.normal(size=(dims, dims)) / np.sqrt(dims)
        mean = offset + rng.normal(size=dims)
        return mean + rng.normal(size=(count, dims)) @ mixing.T * rng.uniform(0.5, 2.0, size=dims)

    real, fake = gaussian_features(5.0, 700), gaussian_features(5.5, 500)
    reference = calculate_frechet_distance(
        real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False)
    )

    metric = FrechetInceptionDistance(weights=reference_inception(random_inception_home, dims), dims=dims)
    other_process = FrechetInceptionDistance(weights=reference_inception(random_inception_home, dims), dims=dims)
    for chunk in np.array_split(real, 3):
        metric.update(torch.from_numpy(chunk), real=True)
    other_process.update(torch.from_numpy(fake[:123]), real=False)
    metric.update(torch.from_numpy(fake[123:]), real=False)
    metric.merge_state(other_process)  # the same sum reduction DDP applies
    assert reference > 10, "a realistic-scale distance, not a near-zero one"
    assert float(metric.compute()) == pytest.approx(reference, rel=1e-6)


def test_fid_samples_video_frames_evenly(random_inception_home):
    model = reference_inception(random_inception_home, 64)
    metric = FrechetInceptionDistance(weights=model, dims=64, frames_per_video=3)
    videos = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 7, 3, 24, 24), dtype=np.uint8))
    expected = metric.features(videos[:, [0, 3, 6]].flatten(0, 1))
    assert torch.equal(metric.features(videos), expected)
    metric.frames_per_video = None
    assert metric.features(videos).shape == (14, 64)


# ---------------------------------------------------------------- LPIPS


@pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")  # lpips' own torchvision call
@pytest.mark.parametrize(
    "net, torchvision_model", [("alex", torchvision.models.alexnet), ("vgg", torchvision.models.vgg16)]
)
def test_lpips_matches_the_lpips_package(net, torchvision_model):
    # lpips draws its untrained backbone from torchvision as torchvision_model(weights=None) does after the same seed.
    torch.manual_seed(7)
    reference = lpips.LPIPS(net=net, pnet_rand=True, verbose=False)
    torch.manual_seed(7)
    backbone = torchvision_model(weights=None).state_dict()
    torch.manual_seed(99)  # ours starts from a different random backbone: only the loaded tensors can make it agree
    metric = LPIPS(net=net, weights=lpips_network(net, backbone), normalize=True)

    clean = portrait_crops(4, size=64, seed=3)
    preds = as_tensor(degraded(clean)).float() / 255
    target = as_tensor(clean).float() / 255
    with torch.no_grad():
        expected = reference(preds, target, normalize=True).mean().item()
    metric.update(preds[:1], target[:1])
    metric.update(preds[1:], target[1:])
    assert expected > 1e-3
    assert metric.compute().item() == pytest.approx(expected, rel=1e-4)


# ---------------------------------------------------------------- PSNR / SSIM


def image_pairs() -> tuple[np.ndarray, np.ndarray]:
    """Three (clean, distorted) pairs of 128x128 RGB photographs in [0, 1]: noise, blur, noise + blur."""
    rng = np.random.default_rng(0)
    photos = [skimage.data.astronaut()[::4, ::4], skimage.data.coffee()[:256:2, 100:356:2], skimage.data.chelsea()]
    clean = np.stack([photo[:128, :128] for photo in photos])
    clean = clean.astype(np.float64) / 255
    noisy = np.clip(clean[0] + rng.normal(0, 0.05, clean[0].shape), 0, 1)
    blurred = skimage.filters.gaussian(clean[1], sigma=2, channel_axis=-1)
    both = skimage.filters.gaussian(clean[2], sigma=1, channel_axis=-1)
    both = np.clip(both + rng.normal(0, 0.03, both.shape), 0, 1)
    return clean, np.stack([noisy, blurred, both])


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-7), (torch.float32, 1e-4)])
def test_psnr_and_ssim_match_skimage_on_photographs(dtype, tolerance):
    clean, distorted = image_pairs()
    pairs = list(zip(clean, distorted))
    expected_psnr = np.mean([skimage.metrics.peak_signal_noise_ratio(c, d, data_range=1.0) for c, d in pairs])
    expected_ssim = np.mean(
        [
            skimage.metrics.structural_similarity(
                c, d, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
            )
            for c, d in pairs
        ]
    )
    preds, target = (torch.from_numpy(x).permute(0, 3, 1, 2).to(dtype) for x in (distorted, clean))
    psnr_metric, ssim_metric = psnr(data_range=1.0), SSIM(data_range=1.0)
    for metric in (psnr_metric, ssim_metric):
        metric.update(preds[:2], target[:2])
        metric.update(preds[2:], target[2:])
    assert psnr_metric.compute().item() == pytest.approx(expected_psnr, rel=tolerance)
    assert ssim_metric.compute().item() == pytest.approx(expected_ssim, rel=tolerance)


def test_ssim_matches_skimage_on_grayscale_0_255():
    camera = skimage.data.camera()[::2, ::2].astype(np.float64)
    distorted = np.clip(skimage.filters.gaussian(camera, sigma=1.2, preserve_range=True) + 5, 0, 255)
    expected = skimage.metrics.structural_similarity(
        camera, distorted, data_range=255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    metric = SSIM(data_range=255.0)
    metric.update(torch.from_numpy(distorted)[None, None], torch.from_numpy(camera)[None, None])
    assert metric.compute().item() == pytest.approx(expected, rel=1e-7)


# ---------------------------------------------------------------- SyncNet MFCC


@pytest.fixture(scope="module")
def speech_int16(tmp_path_factory) -> np.ndarray:
    """Real synthesised speech (espeak-ng), resampled to 16 kHz and quantised to int16 as SyncNet's ffmpeg step does."""
    assert shutil.which("espeak-ng"), ("espeak-ng is not installed (apt-get install espeak-ng, or run make test, "
                                       "which installs it)")
    import soundfile
    import soxr

    wav = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "Kids are talking by the door, and she sounds furious."], check=True)
    wave, rate = soundfile.read(wav, dtype="float64")
    wave = soxr.resample(wave, rate, 16000)
    return np.clip(np.round(wave * 32768), -32768, 32767).astype(np.int16)


def test_syncnet_mfcc_matches_python_speech_features_on_speech(speech_int16):
    expected = python_speech_features.mfcc(speech_int16, 16000).T
    assert expected.shape[0] == 13 and expected.shape[1] > 100
    assert relative_error(syncnet_mfcc(speech_int16), expected) < 1e-10
    np.testing.assert_allclose(syncnet_mfcc(speech_int16), expected, rtol=1e-4, atol=1e-6)
    # float audio in [-1, 1] (as soundfile/librosa decode int16 PCM) lands on the same int16 scale
    np.testing.assert_allclose(syncnet_mfcc(speech_int16.astype(np.float32) / 32768), expected, rtol=1e-4, atol=1e-6)


def test_syncnet_mfcc_torch_matches_python_speech_features(speech_int16):
    halves = np.stack([speech_int16[:16000], speech_int16[-16000:]])
    batched = syncnet_mfcc_torch(torch.from_numpy(halves)).numpy()
    for wave, ours in zip(halves, batched):
        np.testing.assert_allclose(ours, python_speech_features.mfcc(wave, 16000).T, rtol=1e-4, atol=1e-6)
    single = syncnet_mfcc_torch(torch.from_numpy(speech_int16).float() / 32768).numpy()
    np.testing.assert_allclose(single, python_speech_features.mfcc(speech_int16, 16000).T, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("length", [1, 399, 400, 401, 560, 561, 4000])
def test_syncnet_mfcc_frame_edges_match(speech_int16, length):
    wave = speech_int16[8000 : 8000 + length]
    expected = python_speech_features.mfcc(wave, 16000).T
    np.testing.assert_allclose(syncnet_mfcc(wave), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(syncnet_mfcc_torch(torch.from_numpy(wave)).numpy(), expected, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- weights registry


def test_registry_reports_missing_files_with_their_expected_path(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for name, entry in REGISTRY.items():
        expected_path = tmp_path / "hub" / "checkpoints" / entry.filename
        with pytest.raises(MissingWeightsError) as raised:
            resolve_weights(name)
        assert str(expected_path) in str(raised.value)
        assert entry.url in str(raised.value)
    rows = check_all()
    assert {row["status"] for row in rows if row["name"] in REGISTRY} == {"missing"}
    assert {row["status"] for row in rows if row["name"] not in REGISTRY} == {"ok"}  # shipped in installed packages
    with pytest.raises(MissingWeightsError):
        FrechetInceptionDistance(weights="pretrained")
    with pytest.raises(MissingWeightsError):
        LPIPS(net="alex", weights="pretrained")
    assert list(tmp_path.rglob("*.*")) == [], "nothing was downloaded"


def test_registry_rejects_a_wrong_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for entry in REGISTRY.values():
        (checkpoints / entry.filename).write_bytes(b"not the published weights")
    for name in REGISTRY:
        with pytest.raises(WeightsChecksumError, match="expected"):
            resolve_weights(name)
    # the files of this cache all fail their check; packaged weights (inside wheels) are not in this cache
    assert {row["status"] for row in check_all() if row["name"] in REGISTRY} == {"checksum_mismatch"}
    with pytest.raises(WeightsChecksumError):
        LPIPS(net="vgg", weights="pretrained")


def test_pretrained_fid_refuses_random_weights_under_the_official_name(random_inception_home, monkeypatch):
    # pytorch-fid itself would load this file silently; the registry's hash check is what stops it.
    monkeypatch.setenv("TORCH_HOME", str(random_inception_home))
    with pytest.raises(WeightsChecksumError, match="6726825d"):
        FrechetInceptionDistance(weights="pretrained")


@pytest.mark.parametrize("digest_length", [8, 64])
def test_verified_path_accepts_a_matching_file(tmp_path, monkeypatch, digest_length):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    payload = b"weights bytes"
    entry = WeightsFile(
        name="example",
        description="example weights",
        filename="example.pth",
        sha256=hashlib.sha256(payload).hexdigest()[:digest_length],
        url="https://example.invalid/example.pth",
        licence="n/a",
        size_bytes=len(payload),
    )
    entry.path.parent.mkdir(parents=True)
    entry.path.write_bytes(payload)
    assert verified_path(entry) == tmp_path / "hub" / "checkpoints" / "example.pth"
