"""`dtl study report` on answers given through the real server: exclusions, preference rates with Wilson intervals
and binomial tests, MOS with bootstrap intervals, Krippendorff's alpha and time on task equal the hand-computed
ones; the files and the W&B run are written."""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from datetime import datetime

import pytest

from experiments.study.cli import main as study_main
from experiments.study.server import create_app
from study_helpers import create_study, make_methods, running_server, simulate_participants
from study_oracle import (answered_rows, excluded_participants, expected_preferences, krippendorff_alpha,
                          percentile_bootstrap)

METHODS = {"ours": (200, 160, 140), "baseline": (170, 140, 120), "other": (150, 150, 190)}
CLIPS = ["W009_fear_level_1_001", "W009_happy_level_2_002"]
CRITERIA = ("lip_sync", "emotion")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return make_methods(tmp_path_factory.mktemp("methods"), METHODS, CLIPS)


def read_csv(path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("design", ["2afc", "mos"])
def test_report_numbers_equal_hand_computed_ones(design, folders, tmp_path):
    study = create_study(tmp_path, f"study_{design}", folders, participants=8, design=design, criteria=CRITERIA,
                         attention_checks=1)
    with running_server(create_app(study["db"])) as base:
        # seven take part (random answers, so some fail their attention check); the eighth never starts
        simulate_participants(base, study["tokens"][:7], seed=11)
    out = tmp_path / "report"
    assert study_main(["report", f"study_{design}", "--db", study["db"], "--out", str(out), "--resamples", "4000"]) == 0

    rows = answered_rows(study["db"], f"study_{design}")
    per_participant = (len(CLIPS) * len(CRITERIA) * (3 if design == "2afc" else len(METHODS))) + 1
    excluded = excluded_participants(rows, {p: per_participant for p in range(8)})
    assert 7 in excluded and len(excluded) < 8
    analysed = [r for r in rows if r["participant"] not in excluded and r["kind"] != "attention"]
    participants = read_csv(out / "participants.csv")
    assert {int(p["number"]) for p in participants if p["excluded"]} == excluded
    for p in participants:
        mine = [r for r in rows if r["participant"] == int(p["number"])]
        if mine:
            seconds = [(datetime.fromisoformat(str(r["answered_at"])) - datetime.fromisoformat(str(r["shown_at"])))
                       .total_seconds() for r in mine]
            assert float(p["median_trial_seconds"]) == pytest.approx(statistics.median(seconds), abs=2e-3)
            assert float(p["minutes"]) > 0

    alphas = {r["criterion"]: float(r["krippendorff_alpha"]) if r["krippendorff_alpha"] else None
              for r in read_csv(out / "agreement.csv")}
    if design == "2afc":
        reported = {(r["criterion"], r["method_a"], r["method_b"]): r for r in read_csv(out / "preferences.csv")}
        expected, expected_alphas = expected_preferences(analysed, list(METHODS), list(CRITERIA))
        assert set(reported) == set(expected) and len(expected) == len(CRITERIA) * 3
        for key, hand in expected.items():
            assert (int(reported[key]["n"]), int(reported[key]["wins_a"])) == (hand["n"], hand["wins_a"])
            for name in ("rate_a", "low", "high", "p_value"):
                assert float(reported[key][name]) == pytest.approx(hand[name], abs=1e-9), (key, name)
        assert alphas == pytest.approx(expected_alphas, abs=1e-9)
    else:
        reported = {(r["criterion"], r["method"]): r for r in read_csv(out / "mos.csv")}
        for criterion in CRITERIA:
            units = defaultdict(dict)
            for method in METHODS:
                ratings = [r["rating"] for r in analysed if r["criterion"] == criterion and r["methods"] == [method]]
                row = reported[(criterion, method)]
                assert int(row["n"]) == len(ratings)
                assert float(row["mean"]) == pytest.approx(statistics.mean(ratings), abs=1e-12)
                assert float(row["std"]) == pytest.approx(statistics.stdev(ratings), abs=1e-12)
                # the same resamples as the report's (seed 0, 4000): SciPy draws them as NumPy's integers() would
                low, high = percentile_bootstrap(ratings, 4000, seed=0)
                assert (float(row["low"]), float(row["high"])) == pytest.approx((low, high), abs=1e-12)
                assert low < statistics.mean(ratings) < high
                for r in analysed:
                    if r["criterion"] == criterion and r["methods"] == [method]:
                        units[(r["clip"], method)][r["participant"]] = r["rating"]
            assert alphas[criterion] == pytest.approx(krippendorff_alpha(units, "ordinal"), abs=1e-9)

    markdown = (out / "report.md").read_text()
    assert f"{8 - len(excluded)} of 8 participants analysed" in markdown
    html = (out / "report.html").read_text()
    assert html.count("<img ") == len(CRITERIA) and all((out / f"{c}.png").stat().st_size > 5000 for c in CRITERIA)
    wandb_files = list(out.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(wandb_files) == 1
    assert b"study/participants" in wandb_files[0].read_bytes()


def test_report_of_an_unknown_study_names_the_known_ones(folders, tmp_path, capsys):
    study = create_study(tmp_path, "known", folders, participants=1)
    assert study_main(["report", "unknown", "--db", study["db"], "--out", str(tmp_path / "r"), "--no-wandb"]) == 1
    assert "no study named 'unknown' (studies: known)" in capsys.readouterr().err
