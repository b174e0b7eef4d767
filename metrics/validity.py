"""When a metric's number may be read at all: enough frames scored, and faces that pass the independent face check.

A number is `valid` when the metric scored at least MIN_SCORED_SHARE of the frames it was given, and at most
MAX_FAILED_CHECK_SHARE of the scored frames that were face-checked (metrics.face_check) failed the check. Otherwise
it is flagged `valid: false` with the reason: a metric averaged over a handful of frames, or over "faces" a second
detector does not see, says nothing about the video.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

MIN_SCORED_SHARE = 0.5
MAX_FAILED_CHECK_SHARE = 0.1


@dataclass(frozen=True)
class Validity:
    """frames: frames the metric was given; scored: frames it has a number for; checked: scored frames that were
    face-checked; failed_check: of those, frames whose face failed the check."""

    frames: int
    scored: int
    checked: int
    failed_check: int
    valid: bool
    why: str

    def as_dict(self) -> dict:
        return asdict(self)


def judge(frames: int, scored: int, checked: int, failed_check: int, face_based: bool = True) -> Validity:
    """The verdict for one metric on one video (or, summed, on a set). `face_based=False` for metrics that do not
    look for a face (PSNR, SSIM, LPIPS, FID, CPBD): the face check still applies, since a video without a face is not
    a talking head whatever its pixels score, but "scored" is every frame."""
    reasons = []
    if frames == 0 or scored < MIN_SCORED_SHARE * frames:
        what = "frames with a face" if face_based else "frames"
        reasons.append(f"scored on {scored} of {frames} {what} (< {MIN_SCORED_SHARE:.0%})")
    if checked and failed_check > MAX_FAILED_CHECK_SHARE * checked:
        reasons.append(f"{failed_check} of {checked} checked frames fail the face check "
                       f"(> {MAX_FAILED_CHECK_SHARE:.0%}: dlib's face not confirmed by MTCNN, or without detail)")
    return Validity(frames, scored, checked, failed_check, valid=not reasons, why="; ".join(reasons))


def combine(per_video: list[Validity]) -> Validity:
    """A set's verdict: valid when every video's number is; the counts summed."""
    if not per_video:
        return Validity(0, 0, 0, 0, valid=False, why="no video scored")
    invalid = [v for v in per_video if not v.valid]
    why = f"{len(invalid)} of {len(per_video)} videos not valid (first: {invalid[0].why})" if invalid else ""
    return Validity(frames=sum(v.frames for v in per_video), scored=sum(v.scored for v in per_video),
                    checked=sum(v.checked for v in per_video), failed_check=sum(v.failed_check for v in per_video),
                    valid=not invalid, why=why)
