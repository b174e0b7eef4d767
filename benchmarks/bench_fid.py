"""FID speed against pytorch-fid: the Fréchet distance (2048-d) and Inception feature throughput, in one run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # get_activations draws a progress bar per call

import numpy as np
import skimage.data
import skimage.filters
import torch
from PIL import Image
from pytorch_fid.fid_score import calculate_frechet_distance, get_activations
from pytorch_fid.inception import InceptionV3

from dtl_foundation.atomic_files import atomic_write_text
from metrics.fid import FrechetInceptionDistance, write_seeded_fid_inception
from metrics.frechet import frechet_distance

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def photos() -> list[np.ndarray]:
    return [getattr(skimage.data, name)()[..., :3] for name in PHOTOS]


def photo_crops(count: int, size: int, seed: int) -> np.ndarray:
    """(count, size, size, 3) uint8 random crops of skimage's real photographs."""
    rng = np.random.default_rng(seed)
    sources = [photo for photo in photos() if min(photo.shape[:2]) > size]
    crops = []
    for i in range(count):
        photo = sources[i % len(sources)]
        top, left = rng.integers(0, photo.shape[0] - size), rng.integers(0, photo.shape[1] - size)
        crops.append(photo[top : top + size, left : left + size])
    return np.stack(crops)


def projected_features(crops: np.ndarray, dims: int) -> np.ndarray:
    """ReLU of a fixed random projection of the crops' pixels scaled to [-1, 1]: pool3-like non-negative features."""
    pixels = crops.reshape(len(crops), -1).astype(np.float32) / 127.5 - 1
    projection = np.random.default_rng(1234).normal(size=(pixels.shape[1], dims)).astype(np.float32)
    return np.maximum(pixels @ (projection / np.sqrt(pixels.shape[1])), 0).astype(np.float64)


def realistic_features(samples: int, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Features of clean photo crops and of blurred, noisy ones, through projected_features."""
    real = photo_crops(samples, 32, seed=0)
    rng = np.random.default_rng(1)
    fake = photo_crops(samples, 32, seed=2).astype(np.float64)
    fake = skimage.filters.gaussian(fake, sigma=(0, 1.0, 1.0, 0), preserve_range=True) + rng.normal(0, 8, fake.shape)
    fake = np.clip(fake, 0, 255).astype(np.uint8)
    return projected_features(real, dims), projected_features(fake, dims)


def distance_from_samples(real: np.ndarray, fake: np.ndarray) -> float:
    """The distance without a matrix square root: tr((S1 S2)^½) = Σ singular values of A Bᵀ / √((n1-1)(n2-1))."""
    a, b = real - real.mean(0), fake - fake.mean(0)
    trace_sqrt = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt((len(a) - 1) * (len(b) - 1))
    diff = real.mean(0) - fake.mean(0)
    return float(diff @ diff + (a * a).sum() / (len(a) - 1) + (b * b).sum() / (len(b) - 1) - 2 * trace_sqrt)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_distance(samples: int, dims: int, repeats: int) -> dict:
    real, fake = realistic_features(samples, dims)
    mu1, sigma1, mu2, sigma2 = real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy's notice about pytorch-fid's sqrtm(disp=False)
        reference_s, reference = timed(lambda: calculate_frechet_distance(mu1, sigma1, mu2, sigma2))
    runs = [timed(lambda: frechet_distance(mu1, sigma1, mu2, sigma2)) for _ in range(repeats)]
    ours_s, ours = statistics.median(seconds for seconds, _ in runs), runs[0][1]
    figures = {
        "samples": samples, "dims": dims, "rank_sigma1": int(np.linalg.matrix_rank(sigma1)),
        "trace_sigma1": float(np.trace(sigma1)),
        "pytorch_fid_s": reference_s, "ours_s": ours_s, "ours_all_s": [seconds for seconds, _ in runs],
        "pytorch_fid_value": float(reference), "ours_value": float(ours),
        "relative_difference": abs(ours - reference) / abs(reference), "speedup": reference_s / ours_s,
    }
    if samples <= dims:  # the sample-space SVD is small only then
        exact = distance_from_samples(real, fake)
        figures.update(exact_value=exact, pytorch_fid_error=abs(reference - exact) / exact,
                       ours_error=abs(ours - exact) / exact)
    return figures


def read_images(files: list[Path]) -> torch.Tensor:
    """(N, 3, H, W) uint8 from image files, decoded as pytorch-fid's ImagePathDataset does (PIL, RGB)."""
    arrays = [np.asarray(Image.open(path).convert("RGB")) for path in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


def bench_features(images: int, size: int, batch_size: int, dims: int, work: Path) -> dict:
    write_seeded_fid_inception(work / "torch_home")
    os.environ["TORCH_HOME"] = str(work / "torch_home")
    block = [InceptionV3.BLOCK_INDEX_BY_DIM[dims]]
    reference_model = InceptionV3(block).eval()
    metric = FrechetInceptionDistance(weights=InceptionV3(block), dims=dims)

    folder = work / "images"
    folder.mkdir()
    for i, image in enumerate(photo_crops(images, size, seed=3)):
        Image.fromarray(image).save(folder / f"{i:04d}.png")
    files = sorted(folder.glob("*.png"))

    # Warm-up (oneDNN builds its kernels on first use), then alternate the two on each batch so that the load
    # of a shared machine falls on both alike.
    get_activations(files[:2], reference_model, batch_size=2, dims=dims, num_workers=0)
    metric.features(read_images(files[:2]))
    reference_s = ours_s = decode_s = 0.0
    reference_features = []
    for step, start in enumerate(range(0, len(files), batch_size)):
        chunk = files[start : start + batch_size]

        def run_reference():
            return get_activations(chunk, reference_model, batch_size=len(chunk), dims=dims, num_workers=0)

        def run_ours():
            seconds, batch = timed(lambda: read_images(chunk))
            metric.update(batch, real=True)
            return seconds

        for name in (("reference", "ours") if step % 2 == 0 else ("ours", "reference")):
            if name == "reference":
                seconds, features = timed(run_reference)
                reference_s += seconds
                reference_features.append(features)
            else:
                seconds, decode_seconds = timed(run_ours)
                ours_s += seconds
                decode_s += decode_seconds

    reference_features = np.concatenate(reference_features)
    mu, sigma = metric.statistics(real=True)
    relative = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))
    return {
        "images": images, "size": size, "batch_size": batch_size, "dims": dims,
        "pytorch_fid_images_per_s": images / reference_s, "ours_images_per_s": images / ours_s,
        "ratio": reference_s / ours_s, "ours_decode_share": decode_s / ours_s,
        "mean_relative_difference": relative(mu, reference_features.mean(0)),
        "covariance_relative_difference": relative(sigma, np.cov(reference_features, rowvar=False)),
        "feature_magnitude": float(np.abs(reference_features).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dims", type=int, default=2048, help="feature size for both parts (pool3 = 2048)")
    parser.add_argument("--samples", type=int, default=4096, help="feature vectors per set for the full-rank case")
    parser.add_argument("--few-samples", type=int, default=500, help="per set for the rank-deficient case (0: skip)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours (median); pytorch-fid runs once")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (Inception resizes to 299)")
    parser.add_argument("--batch-size", type=int, default=50, help="pytorch-fid's default")
    parser.add_argument("--skip-features", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    figures = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
        "load_average_before": os.getloadavg()[0],
    }
    print(figures["machine"], f"| load average {figures['load_average_before']:.1f}", flush=True)

    cases = [("full rank", args.samples)] + ([("rank-deficient", args.few_samples)] if args.few_samples else [])
    figures["distance"] = []
    for label, samples in cases:
        result = bench_distance(samples, args.dims, args.repeats)
        figures["distance"].append(result)
        print(f"Fréchet distance, {args.dims}-d, {label} ({samples} samples per set, rank {result['rank_sigma1']}, "
              f"tr S1 = {result['trace_sigma1']:.4g}):\n"
              f"  pytorch-fid {result['pytorch_fid_s']:.2f} s -> {result['pytorch_fid_value']!r}\n"
              f"  ours        {result['ours_s']:.2f} s (median of {args.repeats}) -> {result['ours_value']!r}\n"
              f"  relative difference {result['relative_difference']:.2e}, speedup {result['speedup']:.1f}x",
              flush=True)
        if "exact_value" in result:
            print(f"  exact value from the samples' SVD {result['exact_value']!r}: relative error pytorch-fid "
                  f"{result['pytorch_fid_error']:.1e}, ours {result['ours_error']:.1e}", flush=True)

    if not args.skip_features:
        with tempfile.TemporaryDirectory(prefix="bench_fid.") as work:
            result = bench_features(args.images, args.size, args.batch_size, args.dims, Path(work))
        figures["features"] = result
        print(f"Inception features, {result['images']} PNG images of {result['size']} px, batches of "
              f"{result['batch_size']}, {result['dims']}-d, seeded random weights (features ~"
              f"{result['feature_magnitude']:.2g}):\n"
              f"  pytorch-fid get_activations {result['pytorch_fid_images_per_s']:.2f} images/s\n"
              f"  ours (decode + update)      {result['ours_images_per_s']:.2f} images/s "
              f"(decoding {100 * result['ours_decode_share']:.1f}% of it)\n"
              f"  ratio {result['ratio']:.2f}x; statistics vs get_activations': mean "
              f"{result['mean_relative_difference']:.1e}, covariance {result['covariance_relative_difference']:.1e} "
              f"relative", flush=True)

    figures["load_average_after"] = os.getloadavg()[0]
    print(f"load average after: {figures['load_average_after']:.1f}")
    if args.json:
        atomic_write_text(args.json, json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
