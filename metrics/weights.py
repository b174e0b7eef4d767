"""Registry of the pretrained weight files the metrics load: expected path, checksum, source, licence."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch


class WeightsError(RuntimeError):
    """A registered weight file cannot be used."""


class MissingWeightsError(WeightsError, FileNotFoundError):
    """The file is not at its expected path; nothing is downloaded and no random weights stand in."""


class WeightsChecksumError(WeightsError, ValueError):
    """The file at the expected path is not the published one (wrong sha256 or size)."""


@dataclass(frozen=True)
class WeightsFile:
    """One standard weight file, looked up in torch.hub's checkpoint cache ($TORCH_HOME/hub/checkpoints)."""

    name: str
    description: str
    filename: str
    sha256: str
    """Full 64-hex digest, or the 8-hex prefix that torch.hub embeds in the file name (verified as a prefix)."""
    url: str
    licence: str
    size_bytes: int | None = None

    @property
    def path(self) -> Path:
        # Resolved on each access so that a TORCH_HOME set after import (tests, launchers) is honoured.
        return Path(torch.hub.get_dir()) / "checkpoints" / self.filename

    @property
    def hash_check(self) -> str:
        return "full" if len(self.sha256) == 64 else "prefix"

    def how_to_obtain(self) -> str:
        return (
            f"Download it from {self.url} and save it as {self.path} "
            f"(e.g. `mkdir -p {self.path.parent} && curl -L -o {self.path} {self.url}`), "
            f"or point TORCH_HOME at a directory whose hub/checkpoints/ holds {self.filename}. "
            f"Licence: {self.licence}"
        )


# torch.hub names its files `<stem>-<first 8 hex of sha256>.<ext>` and checks that prefix with check_hash=True;
# the full digests of these three are not recorded here because they could not be confirmed from a source.
REGISTRY: dict[str, WeightsFile] = {
    w.name: w
    for w in (
        WeightsFile(
            name="fid_inception",
            description="FID Inception-v3 (TensorFlow inception-2015-12-05 ported by pytorch-fid)",
            filename="pt_inception-2015-12-05-6726825d.pth",
            sha256="6726825d",
            url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
            licence="Apache-2.0 (pytorch-fid's port of the TensorFlow Inception graph, released under Apache-2.0)",
        ),
        WeightsFile(
            name="alexnet",
            description="torchvision AlexNet ImageNet weights (LPIPS 'alex' backbone)",
            filename="alexnet-owt-7be5be79.pth",
            sha256="7be5be79",
            url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            licence="torchvision BSD-3-Clause; trained on ImageNet, whose terms limit use to non-commercial research",
        ),
        WeightsFile(
            name="vgg16",
            description="torchvision VGG16 ImageNet weights (LPIPS 'vgg' backbone)",
            filename="vgg16-397923af.pth",
            sha256="397923af",
            url="https://download.pytorch.org/models/vgg16-397923af.pth",
            licence="torchvision BSD-3-Clause; trained on ImageNet, whose terms limit use to non-commercial research",
        ),
        WeightsFile(
            name="syncnet_v2",
            description="SyncNet v2 (joonson/syncnet_python) for LSE-C / LSE-D",
            filename="syncnet_v2.model",
            sha256="961e8696f888fce4f3f3a6c3d5b3267cf5b343100b238e79b2659bff2c605442",
            url="http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model",
            licence="VGG (University of Oxford) research release; code MIT, weights for research use",
            size_bytes=54_573_114,
        ),
    )
}

_digest_cache: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, memoised on (path, size, mtime) so repeated resolutions do not re-read 200 MB files."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _digest_cache:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _digest_cache[key] = digest.hexdigest()
    return _digest_cache[key]


def weights_file(name: str) -> WeightsFile:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown weights {name!r}; registered: {', '.join(sorted(REGISTRY))}") from None


def resolve_weights(name: str) -> Path:
    """Verified local path of a registered file; raises MissingWeightsError / WeightsChecksumError, never downloads."""
    return verified_path(weights_file(name))


def verified_path(entry: WeightsFile) -> Path:
    """entry.path once it exists and matches the entry's size and sha256 (full digest or name-embedded prefix)."""
    path = entry.path
    if not path.is_file():
        raise MissingWeightsError(
            f"{entry.description}: {entry.filename} not found; expected at {path}. {entry.how_to_obtain()}"
        )
    size = path.stat().st_size
    if entry.size_bytes is not None and size != entry.size_bytes:
        raise WeightsChecksumError(
            f"{entry.description}: {path} has {size} bytes, expected {entry.size_bytes} "
            f"(truncated or a different file). {entry.how_to_obtain()}"
        )
    actual = sha256_of(path)
    if not actual.startswith(entry.sha256):
        raise WeightsChecksumError(
            f"{entry.description}: {path} has sha256 {actual}, expected "
            f"{'a digest starting with ' if entry.hash_check == 'prefix' else ''}{entry.sha256}. "
            f"{entry.how_to_obtain()}"
        )
    return path


def check_all() -> list[dict]:
    """One row per registered file: expected path, status ok / missing / checksum_mismatch (`dtl weights check`)."""
    rows = []
    for name, entry in REGISTRY.items():
        row = {
            "name": name,
            "description": entry.description,
            "filename": entry.filename,
            "path": str(entry.path),
            "expected_sha256": entry.sha256,
            "hash_check": entry.hash_check,
            "url": entry.url,
            "licence": entry.licence,
        }
        try:
            verified_path(entry)
            row.update(status="ok", message="present and verified")
        except MissingWeightsError as error:
            row.update(status="missing", message=str(error))
        except WeightsChecksumError as error:
            row.update(status="checksum_mismatch", message=str(error))
        rows.append(row)
    return rows
