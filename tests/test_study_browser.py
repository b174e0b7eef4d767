"""Participants in headless Chromium (Playwright driving the system's Chromium) against `dtl study serve` behind a
reverse proxy with a URL prefix: three answer every trial by clicking, one of them reloads midway and resumes, a
fourth uses the keyboard and stops early. The database then holds exactly their answers, and the report's
numbers equal the ones computed here from the same answers."""

from __future__ import annotations

import csv

import pytest
from sqlalchemy import create_engine, text

from browser import chromium
from experiments.study.cli import main as study_main
from study_helpers import create_study, make_methods, prefix_proxy, serve_process
from study_oracle import answered_rows, expected_preferences

METHODS = {"emodiff": (200, 160, 140), "refined": (170, 140, 120)}
CLIPS = ["W011_happy_level_3_001", "W011_sad_level_2_002", "W012_angry_level_1_003"]
CRITERIA = ["lip_sync", "realism"]
TRIALS = len(CLIPS) * len(CRITERIA) + 1  # one pair of methods, one attention check
PREFIX = "/lab/study"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def trial_facts(url: str, number: int, position: int) -> dict:
    with create_engine(url).connect() as connection:
        row = connection.execute(text(
            "SELECT t.kind, t.expected, p.completion_code FROM trial t JOIN participant p ON t.participant_id = p.id "
            "WHERE p.number = :n AND t.position = :pos"), {"n": number, "pos": position}).one()
    return {"kind": row[0], "expected": row[1], "completion_code": row[2]}


def progress(page) -> str:
    return page.locator("#progress-text").inner_text()


def wait_progress(page, done: int) -> None:
    page.wait_for_function("text => document.getElementById('progress-text').textContent === text",
                           arg=f"{done} / {TRIALS}", timeout=20_000)


def take_part(page, link: str, url: str, number: int, choose, clicks: list, reload_after: int | None = None,
              keys: list[str] | None = None) -> None:
    """Consent, read the instructions, answer trials (clicking, or pressing `keys` and stopping after them)."""
    page.goto(link)
    page.click("#agree")
    page.wait_for_selector("#instructions")
    page.click("#start")
    for position in range(TRIALS if keys is None else len(keys)):
        page.wait_for_selector("#question")
        assert progress(page) == f"{position} / {TRIALS}"
        # Chromium decodes both videos of the page (H.264 + AAC through the server and the proxy)
        page.wait_for_function("() => [...document.querySelectorAll('video')].every(v => v.readyState >= 1)",
                               timeout=20_000)
        durations = page.evaluate("() => [...document.querySelectorAll('video')].map(v => v.duration)")
        assert len(durations) == 2 and all(abs(d - 1.6) < 0.1 for d in durations), durations
        facts = trial_facts(url, number, position)
        if keys is None:
            slot = choose(position, facts)
            page.click("#choose-A" if slot == 0 else "#choose-B")
        else:
            slot = 0 if keys[position] in ("a", "ArrowLeft") else 1
            page.keyboard.press(keys[position])
        clicks.append((number, position, slot))
        wait_progress(page, position + 1)
        if reload_after == position + 1:
            page.reload()
            page.wait_for_selector("#question")
            assert page.locator("#agree").count() == 0  # consent is not asked again
            assert progress(page) == f"{position + 1} / {TRIALS}"
    if keys is None:
        page.wait_for_selector("#completion-code")
        assert page.locator("#completion-code").inner_text() == facts["completion_code"]


@pytest.mark.slow
def test_three_participants_in_chromium_and_the_report_of_their_answers(tmp_path):
    executable = chromium()
    from playwright.sync_api import sync_playwright

    folders = make_methods(tmp_path / "methods", METHODS, CLIPS)
    study = create_study(tmp_path, "browser", folders, participants=4, criteria=tuple(CRITERIA), attention_checks=1,
                         base_url=f"http://proxy.invalid{PREFIX}")
    url = study["db"]
    clicks: list[tuple[int, int, int]] = []
    with serve_process(url, root_path=PREFIX) as server, prefix_proxy(server, PREFIX) as proxied:
        links = [link.replace(f"http://proxy.invalid{PREFIX}", proxied) for link in study["links"]]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
            try:
                # attentive participants answer the checks right; participant 2 gets its check wrong
                policies = {
                    0: lambda pos, f: f["expected"] if f["kind"] == "attention" else pos % 2,
                    1: lambda pos, f: f["expected"] if f["kind"] == "attention" else int(pos % 3 == 0),
                    2: lambda pos, f: 1 - f["expected"] if f["kind"] == "attention" else 0,
                }
                media = []
                for number, choose in policies.items():
                    page = browser.new_page()
                    page.on("response", lambda r: media.append(r.status) if "/media/" in r.url else None)
                    take_part(page, links[number], url, number, choose, clicks, reload_after=3 if number == 1 else None)
                assert media and set(media) <= {200, 206}
                take_part(browser.new_page(), links[3], url, 3, None, clicks, keys=["b", "ArrowLeft"])
            finally:
                browser.close()

    rows = answered_rows(url, "browser")
    assert sorted((r["participant"], r["position"], r["choice"]) for r in rows) == sorted(clicks)
    assert len(rows) == 3 * TRIALS + 2

    out = tmp_path / "report"
    assert study_main(["report", "browser", "--db", url, "--out", str(out), "--no-wandb"]) == 0
    with open(out / "participants.csv") as f:
        status = {int(r["number"]): r["excluded"] for r in csv.DictReader(f)}
    assert status[0] == status[1] == ""
    assert status[2] == "failed 1 of 1 attention checks" and status[3] == f"incomplete (2 of {TRIALS} answered)"
    analysed = [r for r in rows if r["participant"] in (0, 1) and r["kind"] != "attention"]
    expected, alphas = expected_preferences(analysed, list(METHODS), CRITERIA)
    with open(out / "preferences.csv") as f:
        reported = {(r["criterion"], r["method_a"], r["method_b"]): r for r in csv.DictReader(f)}
    assert set(reported) == set(expected)
    for key, hand in expected.items():
        assert hand["n"] == len(CLIPS) * 2
        assert (int(reported[key]["n"]), int(reported[key]["wins_a"])) == (hand["n"], hand["wins_a"])
        for name in ("rate_a", "low", "high", "p_value"):
            assert float(reported[key][name]) == pytest.approx(hand[name], abs=1e-9), (key, name)
    with open(out / "agreement.csv") as f:
        reported_alphas = {r["criterion"]: float(r["krippendorff_alpha"]) if r["krippendorff_alpha"] else None
                           for r in csv.DictReader(f)}
    assert set(reported_alphas) == set(alphas) and any(a is not None for a in alphas.values())
    for criterion, alpha in alphas.items():  # None: one value throughout (everyone preferred the same method)
        assert reported_alphas[criterion] == (None if alpha is None else pytest.approx(alpha, abs=1e-9))
