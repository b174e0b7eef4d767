"""The study database's tables (SQLAlchemy ORM); migrations/ creates and evolves them with Alembic.

Participants and the admin are known by the SHA-256 of their secret tokens only. Videos reach a participant
through per-trial media ids (random), never through a path or a method name. One answer per trial is enforced
by a unique constraint, so a replayed or concurrent request cannot store a second one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "study"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    design: Mapped[str] = mapped_column(String(8))
    criteria: Mapped[list] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(Integer)
    attention_checks: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    consent_text: Mapped[str] = mapped_column(Text)
    admin_token_hash: Mapped[str] = mapped_column(String(64))
    wandb_group: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)

    methods: Mapped[list[Method]] = relationship(back_populates="study", order_by="Method.position")
    clips: Mapped[list[Clip]] = relationship(back_populates="study", order_by="Clip.position")
    participants: Mapped[list[Participant]] = relationship(back_populates="study", order_by="Participant.number")


class Method(Base):
    __tablename__ = "method"
    __table_args__ = (UniqueConstraint("study_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(Text)

    study: Mapped[Study] = relationship(back_populates="methods")


class Clip(Base):
    __tablename__ = "clip"
    __table_args__ = (UniqueConstraint("study_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300))
    emotion: Mapped[str | None] = mapped_column(String(40), nullable=True)
    reference_path: Mapped[str | None] = mapped_column(Text, nullable=True)  # identity: the person's portrait

    study: Mapped[Study] = relationship(back_populates="clips")


class Video(Base):
    __tablename__ = "video"

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id"))
    method_id: Mapped[int] = mapped_column(ForeignKey("method.id"))
    shifted: Mapped[bool] = mapped_column(default=False)  # audio delayed (attention checks)
    path: Mapped[str] = mapped_column(Text)

    study: Mapped[Study] = relationship()
    clip: Mapped[Clip] = relationship()
    method: Mapped[Method] = relationship()


class Participant(Base):
    __tablename__ = "participant"
    __table_args__ = (UniqueConstraint("study_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("study.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    completion_code: Mapped[str] = mapped_column(String(40))
    consented_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    study: Mapped[Study] = relationship(back_populates="participants")
    trials: Mapped[list[Trial]] = relationship(back_populates="participant", order_by="Trial.position")


class Trial(Base):
    __tablename__ = "trial"
    __table_args__ = (UniqueConstraint("participant_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(12))
    criterion: Mapped[str] = mapped_column(String(20))
    clip_id: Mapped[int] = mapped_column(ForeignKey("clip.id"))
    expected: Mapped[int | None] = mapped_column(Integer, nullable=True)
    shown_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    participant: Mapped[Participant] = relationship(back_populates="trials")
    clip: Mapped[Clip] = relationship()
    media: Mapped[list[TrialMedia]] = relationship(back_populates="trial", order_by="TrialMedia.slot")
    answer: Mapped[Answer | None] = relationship(back_populates="trial")


class TrialMedia(Base):
    """A video of a trial at a slot (0 = left/only, 1 = right), under a random id that is all a participant sees."""

    __tablename__ = "trial_media"
    __table_args__ = (UniqueConstraint("trial_id", "slot"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trial.id"), index=True)
    slot: Mapped[int] = mapped_column(Integer)
    media_id: Mapped[str] = mapped_column(String(40), unique=True)
    video_id: Mapped[int] = mapped_column(ForeignKey("video.id"))

    trial: Mapped[Trial] = relationship(back_populates="media")
    video: Mapped[Video] = relationship()


class Answer(Base):
    __tablename__ = "answer"

    id: Mapped[int] = mapped_column(primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trial.id"), unique=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participant.id"), index=True)
    choice: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the slot chosen (pair, attention)
    rating: Mapped[int | None] = mapped_column(Integer, nullable=True)  # 1..5 (rating)
    answered_at: Mapped[datetime] = mapped_column(DateTime)

    trial: Mapped[Trial] = relationship(back_populates="answer")
