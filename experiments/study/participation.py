"""What a participant can do, given their token: see where they stand, consent, answer the current trial once,
fetch the videos of their own trials. Every lookup goes through the participant, so one token reaches nothing of
another participant's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from experiments.study.models import Answer, Participant, Trial, TrialMedia
from experiments.study.store import hash_token, utc_now
from experiments.study.wording import RATING_RANGE


class ParticipationError(Exception):
    """A request the study refuses; `status` is the HTTP status to answer with, the message is safe to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def participant_by_token(session: Session, token: str) -> Participant:
    participant = session.scalar(select(Participant).where(Participant.token_hash == hash_token(token)))
    if participant is None:
        raise ParticipationError(404, "unknown participant link")
    return participant


def answered_count(session: Session, participant: Participant) -> int:
    return session.scalar(select(func.count(Answer.id)).where(Answer.participant_id == participant.id))


def current_trial(session: Session, participant: Participant, commit: bool = True) -> Trial | None:
    """The first trial without an answer, marked as shown now the first time it is asked for (committed unless the
    caller commits it with its own change)."""
    trial = session.scalar(select(Trial).where(Trial.participant_id == participant.id, ~Trial.answer.has())
                           .order_by(Trial.position).limit(1))
    if trial is not None and trial.shown_at is None and participant.consented_at is not None:
        trial.shown_at = utc_now()
        if commit:
            session.commit()
    return trial


def total_trials(session: Session, participant: Participant) -> int:
    return session.scalar(select(func.count(Trial.id)).where(Trial.participant_id == participant.id))


def give_consent(session: Session, participant: Participant) -> None:
    if participant.consented_at is None:
        participant.consented_at = utc_now()
        session.commit()


@dataclass(frozen=True)
class Recorded:
    stored: bool  # False: the same answer was stored before (a replay), nothing changed


def _validate(trial: Trial, choice: int | None, rating: int | None) -> None:
    if trial.kind == "rating":
        if choice is not None or rating is None:
            raise ParticipationError(422, "this trial takes a rating")
        low, high = RATING_RANGE
        if not low <= rating <= high:
            raise ParticipationError(422, f"a rating is from {low} to {high}")
    else:
        if rating is not None or choice is None:
            raise ParticipationError(422, "this trial takes a choice")
        if choice not in range(len(trial.media)):
            raise ParticipationError(422, f"a choice is a video number from 0 to {len(trial.media) - 1}")


def record_answer(session: Session, participant: Participant, position: int, choice: int | None,
                  rating: int | None) -> Recorded:
    """Store the answer to trial `position` of this participant: only the current trial, only once; the same
    answer again is a replay (nothing written), a different one a conflict."""
    if participant.consented_at is None:
        raise ParticipationError(409, "consent first")
    trial = session.scalar(select(Trial).where(Trial.participant_id == participant.id, Trial.position == position))
    if trial is None:
        raise ParticipationError(404, "no such trial")
    _validate(trial, choice, rating)
    current = current_trial(session, participant)
    if current is None or current.id != trial.id:
        # answered already (perhaps a moment ago by the same click sent twice): a replay or a conflict
        stored = session.scalar(select(Answer).where(Answer.trial_id == trial.id))
        if stored is not None:
            return _replay(stored, choice, rating)
        raise ParticipationError(409, "answer the trials in order")
    session.add(Answer(trial_id=trial.id, participant_id=participant.id, choice=choice, rating=rating,
                       answered_at=utc_now()))
    try:
        session.flush()
        if current_trial(session, participant, commit=False) is None:  # else the next one is shown from now on
            participant.completed_at = utc_now()
        session.commit()  # one transaction: the answer, and the next trial's shown time or the completion
    except IntegrityError:  # the same trial answered by a concurrent request: the first one stays
        session.rollback()
        stored = session.scalar(select(Answer).where(Answer.trial_id == trial.id))
        return _replay(stored, choice, rating)
    return Recorded(stored=True)


def _replay(stored: Answer, choice: int | None, rating: int | None) -> Recorded:
    if (stored.choice, stored.rating) != (choice, rating):
        raise ParticipationError(409, "this trial was answered already with another answer")
    return Recorded(stored=False)


def own_answers(session: Session, participant: Participant) -> list[dict]:
    rows = session.execute(select(Trial.position, Answer.choice, Answer.rating)
                           .join(Answer, Answer.trial_id == Trial.id)
                           .where(Trial.participant_id == participant.id).order_by(Trial.position))
    return [{"trial": position, "choice": choice, "rating": rating} for position, choice, rating in rows]


def media_path(session: Session, participant: Participant, media_id: str) -> Path:
    path = session.scalar(select(TrialMedia).join(Trial).where(TrialMedia.media_id == media_id,
                                                               Trial.participant_id == participant.id))
    if path is None:
        raise ParticipationError(404, "no such video")
    return Path(path.video.path)


def reference_path(session: Session, participant: Participant, position: int) -> Path:
    trial = session.scalar(select(Trial).where(Trial.participant_id == participant.id, Trial.position == position))
    if trial is None or trial.clip.reference_path is None:
        raise ParticipationError(404, "no reference picture for this trial")
    return Path(trial.clip.reference_path)
