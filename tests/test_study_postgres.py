"""The study on PostgreSQL (a real server from the pgserver wheel, driven through psycopg): the Alembic
migrations build the schema there, participants answering at once lose and duplicate nothing, the report runs."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import pytest

from experiments.study.cli import main as study_main
from experiments.study.database import current_revision, head_revision, make_engine
from experiments.study.server import create_app
from study_helpers import create_study, make_methods, running_server, simulate_participants
from study_oracle import answered_rows


@pytest.fixture
def postgres_url():
    """A fresh server. Its data folder is not under pytest's tmp_path: as root, pgserver runs PostgreSQL as its own
    user and opens the folder's parents to it, and every pytest process that starts on the machine meanwhile
    closes /tmp/pytest-of-root again (0700), which makes PostgreSQL fail with 'Permission denied'."""
    import pgserver  # a dev dependency: PostgreSQL's binaries in a wheel

    with tempfile.TemporaryDirectory(prefix="dtl-pgdata-") as folder:
        server = pgserver.get_server(Path(folder) / "pgdata", cleanup_mode="delete")
        try:
            yield server.get_uri().replace("postgresql://", "postgresql+psycopg://", 1)
        finally:
            server.cleanup()


@pytest.mark.slow
def test_a_study_on_postgresql(postgres_url, tmp_path):
    folders = make_methods(tmp_path / "methods", {"first": (200, 160, 140), "second": (170, 140, 120)},
                           ["P01_happy_level_1_001", "P01_sad_level_2_002"])
    study = create_study(tmp_path, "pg", folders, participants=12, design="mos", attention_checks=1, db=postgres_url)
    assert make_engine(postgres_url).dialect.name == "postgresql"
    assert current_revision(make_engine(postgres_url)) == head_revision()
    with running_server(create_app(postgres_url)) as base:
        result = simulate_participants(base, study["tokens"], replay_every=2, seed=4)
    rows = answered_rows(postgres_url, "pg")
    assert len(rows) == 12 * (2 * 2 * 2 + 1)
    assert set(Counter((r["participant"], r["position"]) for r in rows).values()) == {1}
    sent = {(n, pos): body.get("rating", body.get("choice")) for n, token in enumerate(study["tokens"])
            for pos, body in result["sent"][token].items()}
    assert {(r["participant"], r["position"]): r["rating"] if r["kind"] == "rating" else r["choice"]
            for r in rows} == sent
    assert study_main(["report", "pg", "--db", postgres_url, "--out", str(tmp_path / "report"), "--no-wandb"]) == 0
    assert (tmp_path / "report" / "mos.csv").read_text().count("\n") == 1 + 2 * 2
