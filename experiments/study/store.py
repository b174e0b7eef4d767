"""Writing a new study into the database: its methods, clips, videos, participants with their secret tokens, and
every participant's planned trials with opaque media ids."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from experiments.evaluate.inputs import emotion_of
from experiments.study.models import Clip, Method, Participant, Study, Trial, TrialMedia, Video
from experiments.study.plan import Shown, study_plan
from experiments.study.sources import MethodVideos

TOKEN_BYTES = 24


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def utc_now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class NewStudy:
    name: str
    design: str
    criteria: list[str]
    methods: list[MethodVideos]
    clips: list[str]
    participants: int
    seed: int
    attention_checks: int
    shifted: dict[tuple[str, str], Path]  # (method, clip) -> its audio-delayed copy
    references: dict[str, Path]  # clip -> the identity reference (portrait image or video)
    title: str
    consent_text: str
    wandb_group: str | None


@dataclass(frozen=True)
class CreatedStudy:
    study_id: int
    admin_token: str
    participant_tokens: list[str]


def create_study(session: Session, new: NewStudy) -> CreatedStudy:
    """Insert the study and its full plan in one transaction; the secret tokens are returned, never stored."""
    if session.scalar(select(Study.id).where(Study.name == new.name)) is not None:
        raise ValueError(f"a study named {new.name!r} exists in this database already")
    admin_token = secrets.token_urlsafe(TOKEN_BYTES)
    study = Study(name=new.name, design=new.design, criteria=list(new.criteria), seed=new.seed,
                  attention_checks=new.attention_checks, title=new.title, consent_text=new.consent_text,
                  admin_token_hash=hash_token(admin_token), wandb_group=new.wandb_group, created_at=utc_now())
    session.add(study)
    methods = {m.name: Method(study=study, position=i, name=m.name, source=str(m.folder))
               for i, m in enumerate(new.methods)}
    clips = {c: Clip(study=study, position=i, name=c, emotion=emotion_of(Path(c)),
                     reference_path=str(new.references[c]) if c in new.references else None)
             for i, c in enumerate(new.clips)}
    session.add_all([*methods.values(), *clips.values()])
    videos: dict[Shown, Video] = {}
    for m in new.methods:
        for c in new.clips:
            videos[Shown(m.name, c)] = Video(study=study, method=methods[m.name], clip=clips[c], shifted=False,
                                             path=str(m.videos[c]))
    for (method, clip), path in new.shifted.items():
        videos[Shown(method, clip, shifted=True)] = Video(study=study, method=methods[method], clip=clips[clip],
                                                          shifted=True, path=str(path))
    session.add_all(videos.values())
    plan = study_plan(new.design, [m.name for m in new.methods], new.clips, new.criteria, new.participants,
                      new.seed, new.attention_checks)
    tokens = []
    for number, trials in enumerate(plan):
        token = secrets.token_urlsafe(TOKEN_BYTES)
        tokens.append(token)
        participant = Participant(study=study, number=number, token_hash=hash_token(token),
                                  completion_code=secrets.token_hex(5).upper())
        session.add(participant)
        for position, planned in enumerate(trials):
            trial = Trial(participant=participant, position=position, kind=planned.kind,
                          criterion=planned.criterion, clip=clips[planned.clip], expected=planned.expected)
            session.add(trial)
            for slot, shown in enumerate(planned.shown):
                if shown not in videos:
                    raise ValueError(f"the plan shows {shown} but no such video was made")
                session.add(TrialMedia(trial=trial, slot=slot, media_id=secrets.token_urlsafe(12),
                                       video=videos[shown]))
    session.flush()
    return CreatedStudy(study.id, admin_token, tokens)
