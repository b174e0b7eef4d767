"""Negative controls on real faces for every image-level metric of `dtl eval` (identity, emotion, M/F-LMD, CPBD,
PSNR, SSIM; FID and LPIPS where their standard weights are installed): a faithfully animated portrait (skimage's
astronaut moved a few pixels per frame) must beat a blob (the same frames blurred to an orange blur, as a broken
renderer makes), another person (matplotlib's Grace Hopper) and the degradation each metric is built to catch, by a
margin; and each check fails once the metric under test is replaced by a constant.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from controls_helpers import assert_fails_when_constant, assert_ranks, clip_item
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage import data
from test_face_metrics import warp_mouth_down

import metrics.identity
import metrics.landmark_distance
from experiments.evaluate.controls import animate, blob, noisy, other_person_image
from experiments.evaluate.face_scorers import EmotionScores, IdentityScores, LandmarkScores
from experiments.evaluate.scorers import PairedImageScores, SharpnessScores
from experiments.evaluate.validity import check_video, scorer_validity
from metrics.face_check import FaceCheck
from dtl_foundation.media.face_detect import FaceLandmarker
from dtl_foundation.weights import WeightsError, resolve_weights

FRAMES = 8
SIZE = 256


def face_square(image: np.ndarray) -> np.ndarray:
    """A SIZE px square around dlib's face box (2.2 x its side), as talking-head renderers frame a portrait."""
    left, top, right, bottom = FaceLandmarker().detect(image).box
    cx, cy, side = (left + right) / 2, (top + bottom) / 2, 2.2 * max(right - left, bottom - top)
    box = (int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2))
    return np.asarray(Image.fromarray(image).crop(box).resize((SIZE, SIZE), Image.Resampling.LANCZOS))


def jpeg(frames: np.ndarray, quality: int = 90) -> np.ndarray:
    out = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(buffer).convert("RGB")))
    return np.stack(out)


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return face_square(data.astronaut())


@pytest.fixture(scope="module")
def controls(portrait) -> dict[str, np.ndarray]:
    faithful = animate(portrait, FRAMES, (SIZE, SIZE))
    landmarker = FaceLandmarker()
    mouth_moved = np.stack([warp_mouth_down(f, landmarker.detect(f).landmarks, 9) for f in faithful])
    return {"faithful": faithful, "blob": blob(faithful), "other_person": animate(other_person_image(), FRAMES,
                                                                                   (SIZE, SIZE)),
            "noisy": noisy(faithful), "blurred": np.clip(gaussian_filter(faithful.astype(np.float64), (0, 2, 2, 0)),
                                                         0, 255).astype(np.uint8), "mouth_moved": mouth_moved}


@pytest.fixture(scope="module")
def face_check() -> FaceCheck:
    return FaceCheck()


def validity(scorer, frames: np.ndarray, face_check: FaceCheck):
    return scorer_validity(scorer, check_video(face_check, frames, np.arange(len(frames))))


def test_the_blob_is_a_featureless_blur_that_dlib_and_mtcnn_do_not_confirm(controls, face_check):
    faithful, blob_frames = controls["faithful"], controls["blob"]
    # no edges left: the blob's gradient energy is a small fraction of the portrait's
    energy = [np.abs(np.diff(f.astype(np.float64).mean(-1), axis=1)).mean() for f in (faithful[0], blob_frames[0])]
    assert energy[1] < 0.25 * energy[0], energy
    assert blob_frames[..., 0].mean() > blob_frames[..., 2].mean() + 40  # orange
    assert all(face_check(f).passed for f in faithful)
    assert not any(face_check(f).passed for f in blob_frames)


def test_face_check_rejects_a_blob_that_both_detectors_still_find_and_keeps_a_mild_blur(portrait):
    from experiments.evaluate.controls import ORANGE
    from metrics.identity import DlibFaceDescriptor

    def orange_blur(sigma: float) -> np.ndarray:
        blurred = gaussian_filter(portrait.astype(np.float64), (sigma, sigma, 0))
        return np.clip(0.5 * blurred + 127.5 * ORANGE * (blurred.mean(-1, keepdims=True) / 255 + 0.3), 0, 255
                       ).astype(np.uint8)

    faint = orange_blur(4)  # the kind of blob `make demo`'s renderer made: eye sockets and a mouth still show
    verdict = FaceCheck()(faint)
    assert verdict.dlib_box is not None and verdict.mtcnn_probability > 0.99 and verdict.iou > 0.5
    describe = DlibFaceDescriptor()
    assert np.linalg.norm(describe(faint) - describe(portrait)) < metrics.identity.DLIB_SAME_PERSON_DISTANCE
    assert not verdict.passed and verdict.detail < 0.1  # only the detail check catches it
    assert FaceCheck(min_detail=0.0)(faint).passed  # without it, the blob would feed every face metric
    mild = gaussian_filter(portrait.astype(np.float64), (1.5, 1.5, 0)).astype(np.uint8)
    assert FaceCheck()(mild).passed and FaceCheck()(portrait).passed


def test_identity_same_person_rate_separates_the_portrait_from_a_blob_and_another_person(portrait, controls,
                                                                                         face_check, monkeypatch):
    scorer = IdentityScores(portrait, None, "dlib", None, None)
    names = ("faithful", "blob", "other_person", "noisy")

    def readouts() -> dict[str, dict]:
        return {name: scorer.score(clip_item(controls[name])) for name in names}

    def check() -> None:
        rows = readouts()
        same = {name: row["identity_same_person"] for name, row in rows.items()}
        assert same["faithful"] >= 0.95 and same["noisy"] >= 0.95, same
        assert_ranks(same, "faithful", ["blob", "other_person"], margin=0.9, better="max")

    check()
    rows = readouts()
    scorer.score(clip_item(controls["faithful"]))
    assert validity(scorer, controls["faithful"], face_check).valid
    scorer.score(clip_item(controls["blob"]))
    verdict = validity(scorer, controls["blob"], face_check)
    assert not verdict.valid and "scored on 0 of 8" in verdict.why, verdict
    assert math.isnan(rows["blob"]["identity_cosine"])  # no face: no similarity, not a high one
    assert rows["other_person"]["identity_distance"] > metrics.identity.DLIB_SAME_PERSON_DISTANCE
    assert_fails_when_constant(check, monkeypatch, metrics.identity, "frame_similarities",
                               lambda embedder, reference, frames: [(0.95, 0.3)] * len(frames))


class ConstantLogits(torch.nn.Module):
    """An emotion judge that says the same thing whatever the face."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()), requires_grad=False)  # FER reads device and dtype from it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 7, dtype=x.dtype) + self.anchor.to(x.dtype)


def test_fer_emotion_separates_a_smile_from_a_neutral_face_and_says_no_face_for_the_blob(controls, face_check,
                                                                                        monkeypatch):
    scorer = EmotionScores(None, None, "cpu")

    def check() -> None:
        rows = {name: scorer.score(clip_item(controls[name], emotion="happy"))
                for name in ("faithful", "other_person", "blob")}
        confidence = {name: row["emotion_confidence"] for name, row in rows.items()}
        assert rows["faithful"]["emotion_predicted"] == "happy", rows
        assert rows["blob"]["emotion_predicted"] == "no face" and rows["blob"]["emotion_accuracy"] == 0, rows
        assert_ranks(confidence, "faithful", ["other_person", "blob"], margin=0.5, better="max")

    check()
    scorer.score(clip_item(controls["blob"], emotion="happy"))
    assert not validity(scorer, controls["blob"], face_check).valid
    assert_fails_when_constant(check, monkeypatch, scorer.fer, "classifier", ConstantLogits())


def test_landmark_distances_separate_head_motion_from_another_face_and_a_moved_mouth(portrait, controls, face_check,
                                                                                     monkeypatch):
    scorer = LandmarkScores(None)
    still = np.repeat(portrait[None], FRAMES, axis=0)  # the reference: the portrait itself

    def rows() -> dict[str, dict]:
        return {name: scorer.score(clip_item(controls[name], reference=still))
                for name in ("faithful", "other_person", "mouth_moved")}

    def check() -> None:
        scored = rows()
        for number in ("m_lmd", "lmd_fit_residual"):
            values = {name: row[number] for name, row in scored.items()}
            assert_ranks(values, "faithful", ["other_person", "mouth_moved"],
                         margin=1.0 if number == "m_lmd" else 0.02, better="min")
        f_lmd = {name: row["f_lmd"] for name, row in scored.items()}
        assert f_lmd["other_person"] > f_lmd["faithful"] + 3, f_lmd

    check()
    blob_row = scorer.score(clip_item(controls["blob"], reference=still))
    assert math.isnan(blob_row["m_lmd"]) and not validity(scorer, controls["blob"], face_check).valid
    assert_fails_when_constant(check, monkeypatch, metrics.landmark_distance, "mouth_landmark_distance",
                               lambda preds, target: 1.5)


def test_cpbd_ranks_the_sharp_portrait_above_blurred_copies(controls, monkeypatch):
    scorer = SharpnessScores(None)

    def check() -> None:
        values = {name: scorer.score(clip_item(controls[name]))["cpbd"] for name in ("faithful", "blurred", "blob")}
        assert_ranks(values, "faithful", ["blurred", "blob"], margin=0.1, better="max")

    check()
    assert_fails_when_constant(check, monkeypatch, scorer.metric, "compute", lambda: torch.tensor(0.4))


@pytest.mark.parametrize("group, margin", [("psnr", 5.0), ("ssim", 0.1)])
def test_psnr_and_ssim_rank_a_light_re_encode_above_noise_a_blob_and_another_person(controls, group, margin,
                                                                                     monkeypatch):
    scorer = PairedImageScores(group)
    reference = controls["faithful"]
    candidates = {"faithful": jpeg(reference), "noisy": controls["noisy"], "blob": controls["blob"],
                  "other_person": controls["other_person"]}

    def check() -> None:
        values = {name: scorer.score(clip_item(frames, reference=reference))[group]
                  for name, frames in candidates.items()}
        assert_ranks(values, "faithful", ["noisy", "blob", "other_person"], margin=margin, better="max")

    check()
    assert_fails_when_constant(check, monkeypatch, scorer.metric, "compute", lambda: torch.tensor(0.5))


def standard_weights(name: str) -> bool:
    try:
        resolve_weights(name)
    except WeightsError:
        return False
    return True


@pytest.mark.skipif(not standard_weights("alexnet"), reason="LPIPS's AlexNet ImageNet weights are not installed "
                    "(dtl weights check); a control on random weights would say nothing about LPIPS")
def test_lpips_ranks_a_light_re_encode_above_noise_a_blob_and_another_person(controls, monkeypatch):
    scorer = PairedImageScores("lpips")
    reference = controls["faithful"]
    candidates = {"faithful": jpeg(reference), "noisy": controls["noisy"], "blob": controls["blob"],
                  "other_person": controls["other_person"]}

    def check() -> None:
        values = {name: scorer.score(clip_item(frames, reference=reference))["lpips"]
                  for name, frames in candidates.items()}
        assert_ranks(values, "faithful", ["noisy", "blob", "other_person"], margin=0.1, better="min")

    check()
    assert_fails_when_constant(check, monkeypatch, scorer.metric, "compute", lambda: torch.tensor(0.3))


@pytest.mark.skipif(not standard_weights("fid_inception"), reason="pytorch-fid's Inception weights are not installed "
                    "(dtl weights check); a control on random weights would say nothing about FID")
def test_fid_ranks_a_light_re_encode_above_a_blob_and_another_person(controls, monkeypatch):
    from experiments.evaluate.scorers import FIDScores

    reference = controls["faithful"]
    candidates = {"faithful": jpeg(reference), "blob": controls["blob"], "other_person": controls["other_person"]}

    def fid(frames: np.ndarray) -> float:
        scorer = FIDScores(FRAMES, "cpu")
        scorer.score(clip_item(frames, reference=reference))
        return scorer.finish()["fid"]

    def check() -> None:
        values = {name: fid(frames) for name, frames in candidates.items()}
        assert_ranks(values, "faithful", ["blob", "other_person"], margin=10.0, better="min")

    check()
    from metrics.fid import FrechetInceptionDistance

    assert_fails_when_constant(check, monkeypatch, FrechetInceptionDistance, "compute",
                               lambda self: torch.tensor(50.0))
