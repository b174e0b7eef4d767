"""The study server's safeguards against a real uvicorn server: one participant's token reaches nothing of
another's, admin routes need the study's admin token, participants never see method names or paths, and
malformed, replayed and oversized requests write nothing."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
import pytest
from sqlalchemy import MetaData, UniqueConstraint, create_engine, insert, select, text
from sqlalchemy.exc import IntegrityError

from experiments.study.models import Base
from experiments.study.server import create_app
from study_helpers import create_study, make_methods, running_server

METHODS = {"warpbaseline": (200, 160, 140), "vidtovidrenderer": (170, 140, 120)}
CLIPS = ["M003_happy_level_3_001", "M003_sad_level_2_002"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("security")
    folders = make_methods(root / "methods", METHODS, CLIPS)
    url = f"sqlite:///{root / 'lab.db'}"
    study = create_study(root, "secure", folders, participants=3, attention_checks=1, db=url)
    other = create_study(root, "other", folders, participants=1, attention_checks=0, db=url)
    with running_server(create_app(url)) as base:
        yield {"base": base, "url": url, "study": study, "other": other, "folders": folders}


def dump(url: str) -> dict[str, list[tuple]]:
    """Every row of every table, to compare the database before and after a request."""
    engine = create_engine(url)
    with engine.connect() as connection:
        return {table: sorted(tuple(row) for row in connection.execute(text(f"SELECT * FROM {table}")))
                for table in Base.metadata.tables}


def client(lab) -> httpx.Client:
    return httpx.Client(base_url=lab["base"], timeout=30)


def api(token: str, path: str = "") -> str:
    return f"/api/p/{token}{path}"


def test_a_token_reaches_only_its_own_participant(lab):
    a, b = lab["study"]["tokens"][0], lab["study"]["tokens"][1]
    with client(lab) as c:
        state_b = c.post(api(b, "/consent"), json={"agree": True}).json()
        c.post(api(a, "/consent"), json={"agree": True})
        first_b = state_b["trial"]
        stored = c.post(api(b, "/answers"), json={"trial": first_b["trial"], "choice": 1}).json()
        assert stored["stored"]
        media_b = [url.rsplit("/", 1)[1] for url in stored["state"]["trial"]["videos"] + first_b["videos"]]
        for media in media_b:
            assert c.get(api(b, f"/media/{media}")).status_code == 200  # the ids are real ...
            assert c.get(api(a, f"/media/{media}")).status_code == 404  # ... and not A's
        assert c.get(api(a, "/answers")).json() == {"answers": []}
        before = dump(lab["url"])
        # A answering "trial 0" answers A's own trial 0; B's answer stays as it was
        assert c.post(api(a, "/answers"), json={"trial": 0, "choice": 0}).status_code == 200
        assert c.get(api(b, "/answers")).json() == {"answers": [{"trial": first_b["trial"], "choice": 1,
                                                                 "rating": None}]}
        after = dump(lab["url"])
        assert len(after["answer"]) == len(before["answer"]) + 1
        assert set(before["answer"]) <= set(after["answer"])
        for unknown in ("x" * 32, b[:-1], "short", "../admin"):
            assert c.get(api(unknown, "/state")).status_code == 404


def test_admin_routes_need_the_studys_admin_token(lab):
    with client(lab) as c:
        for path in ("/admin/secure/progress", "/admin/secure/answers.csv"):
            for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Bearer wrong"},
                            {"Authorization": f"Bearer {lab['other']['admin']}"},
                            {"Authorization": f"Bearer {lab['study']['tokens'][0]}"},
                            {"Authorization": lab["study"]["admin"]}):
                response = c.get(path, headers=headers)
                assert response.status_code == 401, (path, headers)
                assert "warpbaseline" not in response.text
            right = c.get(path, headers={"Authorization": f"Bearer {lab['study']['admin']}"})
            assert right.status_code == 200
        assert c.get("/admin/nosuchstudy/progress",
                     headers={"Authorization": f"Bearer {lab['study']['admin']}"}).status_code == 401


def forbidden_words(lab) -> list[str]:
    words = list(METHODS) + ["/attention", "shifted", ".mp4"]
    for folder in lab["folders"].values():
        words += [str(folder), str(folder.parent)]
    return words + [str(lab["study"]["out"])]


def test_participants_never_see_method_names_or_paths(lab):
    token = lab["study"]["tokens"][2]
    seen = []
    with client(lab) as c:
        page = c.get(f"/p/{token}")
        seen += [page.text, c.get("/static/study.js").text, c.get("/static/study.css").text]
        state = c.get(api(token, "/state")).json()
        seen.append(json.dumps(state))
        state = c.post(api(token, "/consent"), json={"agree": True}).json()
        while state["trial"] is not None:
            seen.append(json.dumps(state))
            for url in state["trial"]["videos"]:
                media = c.get(url)
                assert media.status_code == 200 and media.content[4:8] == b"ftyp"
                assert "etag" not in media.headers and "last-modified" not in media.headers
                seen.append(json.dumps(dict(media.headers)))
            seen.append(c.post(api(token, "/answers"), json={"trial": state["trial"]["trial"], "choice": 5}).text)
            result = c.post(api(token, "/answers"), json={"trial": state["trial"]["trial"], "choice": 0})
            seen.append(result.text)
            state = result.json()["state"]
        seen += [json.dumps(state), c.get(api(token, "/answers")).text, c.get(api(token, "/media/nosuch")).text]
        assert state["completion_code"]
        admin_csv = c.get("/admin/secure/answers.csv",
                          headers={"Authorization": f"Bearer {lab['study']['admin']}"}).text
    words = forbidden_words(lab)
    leaks = [(w, i) for i, text_seen in enumerate(seen) for w in words if w.lower() in text_seen.lower()]
    assert leaks == []
    # the check finds names where they are: the admin export names the methods and the shifted videos
    assert {w for w in words if w in admin_csv} >= {*METHODS, "shifted"}


MALFORMED = [
    (b"not json", "application/json"),
    (b"[0, 1]", "application/json"),
    (b'{"trial": 0}', "application/json"),
    (b'{"choice": 0}', "application/json"),
    (b'{"trial": "0", "choice": 0}', "application/json"),
    (b'{"trial": 0, "choice": true}', "application/json"),
    (b'{"trial": 0, "choice": 0.0}', "application/json"),
    (b'{"trial": 0, "choice": 2}', "application/json"),
    (b'{"trial": 0, "choice": -1}', "application/json"),
    (b'{"trial": 0, "rating": 3}', "application/json"),
    (b'{"trial": 0, "choice": 0, "rating": 3}', "application/json"),
    (b'{"trial": 0, "choice": 0, "participant": 1}', "application/json"),
    (b'{"trial": -1, "choice": 0}', "application/json"),
    (b'{"trial": 99999999999, "choice": 0}', "application/json"),
    (b'{"trial": 7, "choice": 0}', "application/json"),  # not the current trial
    (b'{"trial": 0, "choice": 0}', "text/plain"),
]


def test_malformed_requests_get_4xx_and_write_nothing(lab):
    started = lab["study"]["tokens"][1]  # consented by an earlier test or not: a bad body is refused either way
    with client(lab) as c:
        before = dump(lab["url"])
        for body, content_type in MALFORMED:
            for token in (started, "y" * 32):
                response = c.post(api(token, "/answers"), content=body, headers={"content-type": content_type})
                assert 400 <= response.status_code < 500, (body, response.status_code, response.text)
        assert c.post(api(started, "/consent"), json={"agree": "yes"}).status_code == 422
        assert c.put(api(started, "/answers"), json={"trial": 1, "choice": 0}).status_code == 405
        assert dump(lab["url"]) == before


def test_replays_and_double_clicks_store_one_answer(lab):
    token = lab["other"]["tokens"][0]
    with client(lab) as c:
        state = c.post(api(token, "/consent"), json={"agree": True}).json()
        trial = state["trial"]["trial"]
        first = c.post(api(token, "/answers"), json={"trial": trial, "choice": 1})
        again = c.post(api(token, "/answers"), json={"trial": trial, "choice": 1})
        assert (first.json()["stored"], again.json()["stored"]) == (True, False)
        before = dump(lab["url"])
        assert c.post(api(token, "/answers"), json={"trial": trial, "choice": 0}).status_code == 409
        assert dump(lab["url"]) == before
        following = again.json()["state"]["trial"]["trial"]

    def click(_):
        with client(lab) as each:
            return each.post(api(token, "/answers"), json={"trial": following, "choice": 0})

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(click, range(12)))
    assert {r.status_code for r in responses} == {200}
    assert sum(r.json()["stored"] for r in responses) == 1
    with client(lab) as c:
        assert [a["trial"] for a in c.get(api(token, "/answers")).json()["answers"]] == [trial, following]


def test_without_the_unique_constraint_a_second_answer_would_be_stored(tmp_path):
    """The database, not the request handler alone, keeps one answer per trial: drop the constraint and it fails."""
    for unique in (True, False):
        metadata = MetaData()
        for table in Base.metadata.tables.values():
            table.to_metadata(metadata)
        answer = metadata.tables["answer"]
        if not unique:
            for constraint in [c for c in answer.constraints if isinstance(c, UniqueConstraint)]:
                answer.constraints.discard(constraint)
        engine = create_engine(f"sqlite:///{tmp_path / f'{unique}.db'}")
        metadata.create_all(engine)
        row = {"trial_id": 1, "participant_id": 1, "choice": 0, "answered_at": datetime.now()}
        with engine.begin() as connection:
            connection.execute(text("PRAGMA foreign_keys=OFF"))
            connection.execute(insert(answer).values(**row))
        try:
            with engine.begin() as connection:
                connection.execute(insert(answer).values(**row))
            duplicated = True
        except IntegrityError:
            duplicated = False
        with engine.connect() as connection:
            count = len(connection.execute(select(answer)).all())
        assert (duplicated, count) == ((False, 1) if unique else (True, 2))


def test_oversized_and_unsized_bodies_are_refused_before_anything_is_read(lab, tmp_path):
    token = lab["study"]["tokens"][1]
    with client(lab) as c:
        state = c.post(api(token, "/consent"), json={"agree": True}).json()  # consented before or not
        padded = json.dumps({"trial": state["trial"]["trial"], "choice": 0}).encode() + b" " * 4096
        before = dump(lab["url"])
        response = c.post(api(token, "/answers"), content=padded, headers={"content-type": "application/json"})
        assert response.status_code == 413
        chunked = c.post(api(token, "/answers"), content=iter([padded[:20], padded[20:]]),
                         headers={"content-type": "application/json"})
        assert chunked.status_code == 411
        assert dump(lab["url"]) == before
    # the broken variant: a server allowing large bodies stores the same request
    with running_server(create_app(lab["url"], max_body_bytes=1 << 20)) as base:
        with httpx.Client(base_url=base) as c:
            accepted = c.post(api(token, "/answers"), content=padded, headers={"content-type": "application/json"})
    assert accepted.status_code == 200 and accepted.json()["stored"]
    assert len(dump(lab["url"])["answer"]) == len(before["answer"]) + 1
