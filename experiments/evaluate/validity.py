"""Validity beside every number of `dtl eval`: each video's faces are checked once (dlib agreed by MTCNN,
metrics.face_check), and each metric group's number on that video is judged by metrics.validity from the frames the
group was given, the frames it scored, and how many of those failed the face check.

Face-based groups (lse, identity, emotion with FER, lmd) say which frames they scored (`Scorer.given`,
`Scorer.scored`); the others score every frame they are given, and the face check still applies to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from metrics.validity import Validity, combine, judge

GROUP_NUMBERS: dict[str, tuple[str, ...]] = {
    "lse": ("lse_c", "lse_d", "av_offset"), "lse_expert": ("lse_c_expert", "lse_d_expert", "av_offset_expert"),
    "fid": ("fid",), "lpips": ("lpips",), "psnr": ("psnr",), "ssim": ("ssim",), "cpbd": ("cpbd",),
    "identity": ("identity_cosine", "identity_distance", "identity_same_person"),
    "emotion": ("emotion_accuracy", "emotion_confidence", "emotion_judge_confidence"),
    "lmd": ("m_lmd", "f_lmd", "lmd_fit_residual"),
}


def group_of(number: str) -> str | None:
    """The metric group a reported number belongs to."""
    return next((group for group, names in GROUP_NUMBERS.items() if number in names), None)


@dataclass
class VideoFaceCheck:
    """The face check of one generated video's frames at `indices` (passed[i] for frame indices[i])."""

    indices: np.ndarray
    passed: np.ndarray
    dlib_scores: list[float | None]
    mtcnn_probabilities: list[float | None]
    details: list[float | None]

    def summary(self) -> dict[str, Any]:
        dlib = [s for s in self.dlib_scores if s is not None]
        mtcnn = [p for p in self.mtcnn_probabilities if p is not None]
        details = [d for d in self.details if d is not None]
        return {"frames_checked": int(len(self.indices)), "frames_passed": int(self.passed.sum()),
                "dlib_faces": len(dlib), "dlib_score_mean": float(np.mean(dlib)) if dlib else None,
                "mtcnn_faces": len(mtcnn), "mtcnn_probability_mean": float(np.mean(mtcnn)) if mtcnn else None,
                "face_detail_mean": float(np.mean(details)) if details else None}


def check_video(face_check, frames: np.ndarray, indices: np.ndarray) -> VideoFaceCheck:
    checks = [face_check(frames[i]) for i in indices]
    return VideoFaceCheck(indices=np.asarray(indices), passed=np.array([c.passed for c in checks], dtype=bool),
                          dlib_scores=[c.dlib_score for c in checks],
                          mtcnn_probabilities=[c.mtcnn_probability for c in checks],
                          details=[c.detail for c in checks])


def scorer_validity(scorer, check: VideoFaceCheck | None) -> Validity:
    """The verdict on one group's number for the video `check` describes."""
    given = getattr(scorer, "given", None)
    scored = getattr(scorer, "scored", None)
    face_based = given is not None
    if not face_based:  # the group scores every frame it is given
        given = scored = check.indices if check is not None else np.empty(0, dtype=int)
    if check is None:
        return judge(len(given), len(scored), 0, 0, face_based) if face_based else Validity(
            0, 0, 0, 0, valid=True, why="")
    verdict = dict(zip(check.indices.tolist(), check.passed.tolist()))
    checked = [verdict[i] for i in np.asarray(scored).tolist() if i in verdict]
    return judge(len(given), len(scored), len(checked), checked.count(False), face_based)


def set_validity(per_video: dict[str, dict[str, Validity]], group: str) -> Validity:
    """A group's verdict over the videos that have one (FID: the face checks of every video)."""
    verdicts = [groups[group] for groups in per_video.values() if group in groups]
    return combine(verdicts)


def as_json(per_video: dict[str, dict[str, Validity]], overall: dict[str, Validity],
            checks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"overall": {g: v.as_dict() for g, v in overall.items()},
            "per_video": {name: {g: v.as_dict() for g, v in groups.items()} for name, groups in per_video.items()},
            "face_check": checks}


def not_valid_numbers(result: dict[str, Any]) -> dict[str, str]:
    """Each overall number whose group's verdict is `valid: false`, with why: never to be shown as a plain headline."""
    overall = result.get("validity", {}).get("overall", {})
    flagged = {}
    for name in result["metrics"]:
        verdict = overall.get(group_of(name) or "")
        if verdict is not None and not verdict["valid"]:
            flagged[name] = verdict["why"]
    return flagged


def validity_cells(result: dict[str, Any], name: str) -> tuple[str, str, str]:
    """(valid, frames scored, face check) cells of the markdown table for one overall number."""
    verdict = result.get("validity", {}).get("overall", {}).get(group_of(name) or "")
    if verdict is None:
        return "", "", ""
    valid = "yes" if verdict["valid"] else f"**NO**: {verdict['why']}"
    checked = verdict["checked"]
    face = f"{checked - verdict['failed_check']}/{checked} pass" if checked else "not checked"
    return valid, f"{verdict['scored']}/{verdict['frames']}", face
