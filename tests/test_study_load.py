"""50 participants answering at once against `dtl study serve` (its own process, SQLite): no answer lost, none
stored twice, each the one that was sent. Speed figures come from benchmarks/bench_study.py, not from here."""

from __future__ import annotations

from collections import Counter

import pytest

from study_helpers import create_study, make_methods, serve_process, simulate_participants
from study_oracle import answered_rows

PARTICIPANTS = 50


@pytest.mark.slow
def test_fifty_participants_at_once_lose_and_duplicate_nothing(tmp_path):
    folders = make_methods(tmp_path / "methods", {"first": (200, 160, 140), "second": (170, 140, 120)},
                           ["S01_neutral_level_1_001", "S01_angry_level_3_002", "S02_sad_level_2_003"])
    study = create_study(tmp_path, "load", folders, participants=PARTICIPANTS, attention_checks=1)
    with serve_process(study["db"]) as base:
        result = simulate_participants(base, study["tokens"], replay_every=3, seed=2)
    rows = answered_rows(study["db"], "load")
    per_participant = 3 * 2 * 1 + 1
    assert len(rows) == PARTICIPANTS * per_participant
    assert set(Counter((r["participant"], r["position"]) for r in rows).values()) == {1}
    stored = {(r["participant"], r["position"]): r["choice"] for r in rows}
    sent = {(number, position): body["choice"] for number, token in enumerate(study["tokens"])
            for position, body in result["sent"][token].items()}
    assert stored == sent
