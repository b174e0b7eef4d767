"""A study's answers as plain rows with the method names put back (for the admin's export and the report)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from experiments.study.models import Participant, Study, Trial, TrialMedia, Video


def _shown(media: TrialMedia) -> str:
    return media.video.method.name + (" (audio shifted)" if media.video.shifted else "")


def study_answers(session: Session, study: Study) -> list[dict]:
    """One row per answered trial, in participant and trial order."""
    trials = session.scalars(
        select(Trial).join(Participant).where(Participant.study_id == study.id, Trial.answer.has())
        .options(selectinload(Trial.media).selectinload(TrialMedia.video).selectinload(Video.method),
                 selectinload(Trial.clip), selectinload(Trial.answer), selectinload(Trial.participant))
        .order_by(Participant.number, Trial.position))
    rows = []
    for trial in trials:
        answer, media = trial.answer, trial.media
        rows.append({
            "participant": trial.participant.number,
            "trial": trial.position,
            "kind": trial.kind,
            "criterion": trial.criterion,
            "clip": trial.clip.name,
            "emotion": trial.clip.emotion or "",
            "left": _shown(media[0]),
            "right": _shown(media[1]) if len(media) > 1 else "",
            "expected": "" if trial.expected is None else trial.expected,
            "choice": "" if answer.choice is None else answer.choice,
            "chosen": _shown(media[answer.choice]) if answer.choice is not None else "",
            "rating": "" if answer.rating is None else answer.rating,
            "shown_at": trial.shown_at.isoformat() if trial.shown_at else "",
            "answered_at": answer.answered_at.isoformat(),
            "seconds": round((answer.answered_at - trial.shown_at).total_seconds(), 3) if trial.shown_at else "",
        })
    return rows


def participants_of(session: Session, study: Study) -> list[Participant]:
    return list(session.scalars(select(Participant).where(Participant.study_id == study.id)
                                .options(selectinload(Participant.trials)).order_by(Participant.number)))
