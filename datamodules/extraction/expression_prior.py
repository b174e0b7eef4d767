"""A Gaussian prior over the 52 ARKit coefficients, learned from captured tracks, for the landmark fit's MAP term.

Landmarks alone cannot tell some mouth shapes apart (mouthPress, mouthClose and jawOpen move dlib's 68 points
almost alike); real captures say how those shapes co-occur, and the fit's Mahalanobis penalty under this prior
hands ambiguous motion to the combination that captures make likely.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from tqdm import tqdm

from datamodules.manifest import Manifest
from datamodules.tracks import CorpusError, check_track_values, corpus_npy_order, load_track, read_corpus_info
from dtl_foundation.arkit import ARKIT_NAMES, NUM_BLENDSHAPES
from dtl_foundation.atomic_files import atomic_save_npz
from dtl_foundation.mead import TRACK_EXTENSIONS

PRIOR_FORMAT = "dtl-expression-prior"
PRIOR_VERSION = 1
MIN_STD = 0.01  # a floor under every shape's spread: a shape the captures never moved is not pinned outright


class PriorError(ValueError):
    """An expression prior that cannot be made or read; the message names the file and the problem."""


@dataclass
class MomentSums:
    """Streaming sums of the frames' first, second and fourth moments: enough for the Ledoit-Wolf estimate."""

    frames: int = 0
    sum: np.ndarray = field(default_factory=lambda: np.zeros(NUM_BLENDSHAPES))
    outer: np.ndarray = field(default_factory=lambda: np.zeros((NUM_BLENDSHAPES, NUM_BLENDSHAPES)))
    norm4: float = 0.0
    norm2_x: np.ndarray = field(default_factory=lambda: np.zeros(NUM_BLENDSHAPES))  # sum of |x|^2 x

    def add(self, track: np.ndarray) -> None:
        x = np.asarray(track, dtype=np.float64)
        norm2 = (x ** 2).sum(1)
        self.frames += len(x)
        self.sum += x.sum(0)
        self.outer += x.T @ x
        self.norm4 += float((norm2 ** 2).sum())
        self.norm2_x += norm2 @ x

    def ledoit_wolf(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(mean, shrunk covariance, shrinkage): S shrunk towards tr(S)/p I by the weight that minimises the
        expected Frobenius error (Ledoit & Wolf 2004, "A well-conditioned estimator for large-dimensional
        covariance matrices"), the same estimate as sklearn.covariance.ledoit_wolf, from streamed moments."""
        n, p = self.frames, NUM_BLENDSHAPES
        mean = self.sum / n
        S = self.outer / n - np.outer(mean, mean)
        # sum over frames of |x - mean|^4, expanded into the streamed moments
        c = float(mean @ mean)
        sum_a2 = self.norm4
        sum_b2 = float(mean @ self.outer @ mean)
        sum_ab = float(self.norm2_x @ mean)
        sum_a = float(np.trace(self.outer))
        sum_b = float(self.sum @ mean)
        centred4 = sum_a2 + 4 * sum_b2 + n * c * c - 4 * sum_ab + 2 * c * sum_a - 4 * c * sum_b
        mu = float(np.trace(S)) / p
        delta = float(((S - mu * np.eye(p)) ** 2).sum())
        beta = max(centred4 / n - float((S ** 2).sum()), 0.0) / n
        shrinkage = 0.0 if delta <= 0 else min(beta, delta) / delta
        return mean, shrinkage * mu * np.eye(p) + (1 - shrinkage) * S, shrinkage


@dataclass(frozen=True)
class ExpressionPrior:
    """N(mean, covariance) over the 52 coefficients (Apple order), learned from `frames` frames of `speakers`."""

    mean: np.ndarray
    covariance: np.ndarray
    frames: int
    shrinkage: float
    min_std: float
    speakers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if np.shape(self.mean) != (NUM_BLENDSHAPES,) or np.shape(self.covariance) != (NUM_BLENDSHAPES,) * 2:
            raise PriorError(f"an expression prior needs a ({NUM_BLENDSHAPES},) mean and a ({NUM_BLENDSHAPES}, "
                             f"{NUM_BLENDSHAPES}) covariance, got {np.shape(self.mean)} and "
                             f"{np.shape(self.covariance)}")

    def precision(self, shapes: Iterable[int] | None = None) -> np.ndarray:
        """Inverse covariance of the marginal over `shapes` (all 52 by default): the other shapes integrated out."""
        idx = np.arange(NUM_BLENDSHAPES) if shapes is None else np.asarray(list(shapes), dtype=int)
        return np.linalg.inv(self.covariance[np.ix_(idx, idx)])

    def mahalanobis(self, coeffs: np.ndarray) -> np.ndarray:
        """(T,) squared Mahalanobis distance of each frame of a (T, 52) track from the mean."""
        d = np.asarray(coeffs, dtype=np.float64) - self.mean
        return np.einsum("ti,ij,tj->t", d, self.precision(), d)

    def correlation(self, a: str, b: str) -> float:
        """The prior's correlation between two shapes named in ARKit spelling."""
        i, j = ARKIT_NAMES.index(a), ARKIT_NAMES.index(b)
        return float(self.covariance[i, j] / np.sqrt(self.covariance[i, i] * self.covariance[j, j]))

    def save(self, path: str | os.PathLike) -> None:
        atomic_save_npz(path, format=np.array(PRIOR_FORMAT), version=np.array(PRIOR_VERSION),
                        mean=self.mean, covariance=self.covariance, frames=np.array(self.frames),
                        shrinkage=np.array(self.shrinkage), min_std=np.array(self.min_std),
                        speakers=np.array(self.speakers, dtype=str), names=np.array(ARKIT_NAMES))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ExpressionPrior":
        path = Path(path)
        if not path.is_file():
            raise PriorError(f"{path}: no such expression prior file (make one with `dtl data prior`)")
        try:
            with np.load(path, allow_pickle=False) as data:
                if "format" not in data or str(data["format"]) != PRIOR_FORMAT:
                    raise PriorError(f"{path}: not an expression prior (no {PRIOR_FORMAT!r} format field)")
                if int(data["version"]) != PRIOR_VERSION:
                    raise PriorError(f"{path}: expression prior version {int(data['version'])}, this code reads "
                                     f"{PRIOR_VERSION}")
                if tuple(data["names"].tolist()) != ARKIT_NAMES:
                    raise PriorError(f"{path}: the prior's blendshapes are not the 52 ARKit names in Apple order")
                prior = cls(mean=data["mean"].astype(np.float64), covariance=data["covariance"].astype(np.float64),
                            frames=int(data["frames"]), shrinkage=float(data["shrinkage"]),
                            min_std=float(data["min_std"]), speakers=tuple(data["speakers"].tolist()))
        except PriorError as e:
            if str(e).startswith(str(path)):
                raise
            raise PriorError(f"{path}: {e}") from None
        except (OSError, ValueError, KeyError, EOFError) as e:
            raise PriorError(f"{path}: unreadable expression prior ({type(e).__name__}: {e})") from None
        if not (np.isfinite(prior.mean).all() and np.isfinite(prior.covariance).all()):
            raise PriorError(f"{path}: the prior holds NaN or inf values")
        try:
            np.linalg.cholesky(prior.covariance)
        except np.linalg.LinAlgError:
            raise PriorError(f"{path}: the prior's covariance is not positive definite") from None
        return prior


def learn_prior(tracks: Iterable[np.ndarray], *, min_std: float = MIN_STD, speakers: Iterable[str] = (),
                names: Iterable[str] | None = None) -> ExpressionPrior:
    """The Gaussian of (T, 52) tracks: their mean and Ledoit-Wolf covariance plus min_std^2 on the diagonal.

    `names` (one per track, e.g. its file) only label the errors.
    """
    sums = MomentSums()
    labels = iter(names) if names is not None else None
    for k, track in enumerate(tracks):
        label = next(labels) if labels is not None else f"track {k}"
        track = np.asarray(track)
        if track.ndim != 2 or track.shape[1] != NUM_BLENDSHAPES:
            raise PriorError(f"{label}: a track must be (frames, {NUM_BLENDSHAPES}), got {track.shape}")
        if not np.isfinite(track).all():
            raise PriorError(f"{label}: the track holds NaN or inf values")
        sums.add(track)
    if sums.frames < 2:
        raise PriorError(f"an expression prior needs at least 2 frames of tracks, got {sums.frames}")
    mean, covariance, shrinkage = sums.ledoit_wolf()
    covariance = covariance + min_std ** 2 * np.eye(NUM_BLENDSHAPES)
    return ExpressionPrior(mean=mean, covariance=covariance, frames=sums.frames, shrinkage=shrinkage,
                           min_std=min_std, speakers=tuple(sorted(set(speakers))))


def track_files(source: str | os.PathLike, speakers: Iterable[str] | None = None) -> list[tuple[str, Path]]:
    """(speaker, file) of every track of a corpus (<ID>/arkit/**/*.npy or .csv) or of a manifest (.jsonl)."""
    source = Path(source)
    wanted = set(speakers) if speakers else None
    if source.is_file():
        try:
            manifest = Manifest.load(source)
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise PriorError(f"{source}: neither a corpus folder nor a readable manifest ({e})") from None
        found = [(r.speaker, Path(manifest.root) / r.track_path) for r in manifest.records]  # absolute stays so
    elif source.is_dir():
        found = [(d.name, p) for d in sorted(source.iterdir()) if d.is_dir() and (d / "arkit").is_dir()
                 for p in sorted((d / "arkit").rglob("*"))
                 if p.suffix.lower() in TRACK_EXTENSIONS and not p.name.startswith(".")]
    else:
        raise PriorError(f"{source}: no such corpus folder or manifest")
    if wanted is not None:
        missing = wanted - {s for s, _ in found}
        if missing:
            raise PriorError(f"{source}: no tracks of the speakers {sorted(missing)}")
        found = [(s, p) for s, p in found if s in wanted]
    if not found:
        raise PriorError(f"{source}: no ARKit tracks (<ID>/arkit/<emotion>/level_<k>/<NNN>.npy or .csv)")
    return found


def npy_order_of(source: str | os.PathLike) -> str:
    """The column order of the `.npy` tracks of a corpus folder (its CORPUS.json) or of a manifest."""
    source = Path(source)
    if source.is_file():
        return Manifest.load(source).arkit_order
    try:
        return corpus_npy_order(source, read_corpus_info(source))[0]
    except CorpusError as e:
        raise PriorError(str(e)) from None


def prior_from_tracks(source: str | os.PathLike, speakers: Iterable[str] | None = None, *, min_std: float = MIN_STD,
                      progress: bool = True) -> ExpressionPrior:
    """Learn a prior from every track of a corpus or manifest, optionally only those of `speakers`; values
    within the scanner's margin outside [0, 1] are clipped to it."""
    files = track_files(source, speakers)
    order = npy_order_of(source)

    def tracks():
        for _, path in tqdm(files, desc="expression prior", unit="track", disable=not progress):
            try:
                track, _ = load_track(path, npy_order=order)  # the rate does not matter: frames are pooled
                check_track_values(track, path, margin=0.5)
            except CorpusError as e:
                raise PriorError(str(e)) from None
            yield np.clip(track, 0.0, 1.0)

    return learn_prior(tracks(), min_std=min_std, speakers=[s for s, _ in files], names=[str(p) for _, p in files])
