"""The study web application (FastAPI on uvicorn): participant pages and their JSON API, the videos under opaque
ids, and the admin's progress and export behind the study's admin token.

Every URL it writes into a page is under the ASGI root_path, so it works behind a reverse proxy that serves it
under a prefix (`dtl study serve --root-path /prefix`, the proxy stripping the prefix).
"""

from __future__ import annotations

import csv
import hmac
import io
import re
from pathlib import Path
from typing import Iterator

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from experiments.study.database import open_database
from experiments.study.guard import RequestGuard
from experiments.study.models import Participant, Study
from experiments.study.pages import participant_page
from experiments.study.participation import (ParticipationError, answered_count, current_trial, give_consent,
                                             media_path, own_answers, participant_by_token, record_answer,
                                             reference_path, total_trials)
from experiments.study.results import study_answers
from experiments.study.store import hash_token
from experiments.study.wording import RATING_LABELS, instructions, question

STATIC = Path(__file__).resolve().parent / "static"
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")
MAX_BODY_BYTES = 1024
MEDIA_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".png": "image/png", ".jpg": "image/jpeg",
               ".jpeg": "image/jpeg"}


class Consent(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    agree: bool


class AnswerBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    trial: int = Field(ge=0, le=1_000_000)
    choice: int | None = Field(default=None, ge=0, le=1)
    rating: int | None = Field(default=None, ge=1, le=5)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(url: str, migrate: bool = False, max_body_bytes: int = MAX_BODY_BYTES) -> RequestGuard:
    """The ASGI application on the study database at `url` (whose schema must be current unless `migrate`)."""
    sessions: sessionmaker[Session] = open_database(url, migrate=migrate)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def session() -> Iterator[Session]:
        with sessions() as s:
            yield s

    def participant(token: str, s: Session) -> Participant:
        if not TOKEN_PATTERN.fullmatch(token):
            raise ParticipationError(404, "unknown participant link")
        return participant_by_token(s, token)

    @app.exception_handler(ParticipationError)
    async def refused(_request: Request, error: ParticipationError) -> JSONResponse:
        return _error(error.status, error.message)

    @app.exception_handler(RequestValidationError)
    async def malformed(_request: Request, error: RequestValidationError) -> JSONResponse:
        fields = sorted({".".join(str(p) for p in e.get("loc", ())[1:]) or "body" for e in error.errors()})
        return _error(422, f"malformed request: check {', '.join(fields)}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail))

    @app.exception_handler(Exception)
    async def crashed(_request: Request, _error: Exception) -> JSONResponse:
        return _error(500, "the server could not handle this request")

    def state(request: Request, s: Session, p: Participant, token: str) -> dict:
        study = p.study
        root = request.scope.get("root_path", "").rstrip("/")
        total, done = total_trials(s, p), answered_count(s, p)
        out = {"title": study.title, "consent": study.consent_text, "instructions": instructions(study.design),
               "consented": p.consented_at is not None, "answered": done, "total": total,
               "completion_code": p.completion_code if done == total else None, "trial": None}
        trial = current_trial(s, p) if p.consented_at is not None else None
        if trial is not None:
            base = f"{root}/api/p/{token}"
            out["trial"] = {
                "trial": trial.position,
                "type": "rating" if trial.kind == "rating" else "choice",
                "question": question(trial.kind, trial.criterion, trial.clip.emotion),
                "videos": [f"{base}/media/{m.media_id}" for m in trial.media],
                "reference": f"{base}/reference/{trial.position}"
                if trial.criterion == "identity" and trial.clip.reference_path else None,
                "scale": list(RATING_LABELS) if trial.kind == "rating" else None,
            }
        return out

    @app.get("/p/{token}", response_class=HTMLResponse)
    def page(token: str, request: Request, s: Session = Depends(session)) -> HTMLResponse:
        p = participant(token, s)
        root = request.scope.get("root_path", "").rstrip("/")
        return HTMLResponse(participant_page(p.study.title, f"{root}/api/p/{token}", f"{root}/static"))

    @app.get("/api/p/{token}/state")
    def get_state(token: str, request: Request, s: Session = Depends(session)) -> dict:
        return state(request, s, participant(token, s), token)

    @app.post("/api/p/{token}/consent")
    def consent(token: str, body: Consent, request: Request, s: Session = Depends(session)) -> dict:
        p = participant(token, s)
        if not body.agree:
            raise ParticipationError(422, "consent is needed to take part")
        give_consent(s, p)
        return state(request, s, p, token)

    @app.post("/api/p/{token}/answers")
    def answer(token: str, body: AnswerBody, request: Request, s: Session = Depends(session)) -> dict:
        p = participant(token, s)
        recorded = record_answer(s, p, body.trial, body.choice, body.rating)
        return {"stored": recorded.stored, "state": state(request, s, p, token)}

    @app.get("/api/p/{token}/answers")
    def answers(token: str, s: Session = Depends(session)) -> dict:
        return {"answers": own_answers(s, participant(token, s))}

    def file_response(path: Path) -> FileResponse:
        return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream"))

    @app.get("/api/p/{token}/media/{media_id}")
    def media(token: str, media_id: str, s: Session = Depends(session)) -> FileResponse:
        return file_response(media_path(s, participant(token, s), media_id))

    @app.get("/api/p/{token}/reference/{position}")
    def reference(token: str, position: int, s: Session = Depends(session)) -> FileResponse:
        return file_response(reference_path(s, participant(token, s), position))

    def admin_study(name: str, request: Request, s: Session) -> Study:
        given = request.headers.get("authorization", "")
        token = given[7:] if given.lower().startswith("bearer ") else ""
        study = s.scalar(select(Study).where(Study.name == name))
        expected = study.admin_token_hash if study is not None else "0" * 64
        if not (hmac.compare_digest(hash_token(token), expected) and token and study is not None):
            raise ParticipationError(401, "admin token needed (Authorization: Bearer TOKEN)")
        return study

    @app.get("/admin/{name}/progress")
    def progress(name: str, request: Request, s: Session = Depends(session)) -> dict:
        study = admin_study(name, request, s)
        rows = [{"participant": p.number, "consented": p.consented_at is not None, "answered": answered_count(s, p),
                 "total": total_trials(s, p), "completed": p.completed_at is not None} for p in study.participants]
        return {"study": study.name, "design": study.design, "participants": rows}

    @app.get("/admin/{name}/answers.csv")
    def export(name: str, request: Request, s: Session = Depends(session)) -> Response:
        study = admin_study(name, request, s)
        rows = study_answers(s, study)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["participant"])
        writer.writeheader()
        writer.writerows(rows)
        return Response(out.getvalue(), media_type="text/csv")

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True}

    return RequestGuard(app, max_body_bytes)
