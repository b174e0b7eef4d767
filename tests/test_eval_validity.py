"""`dtl eval` puts validity beside every number: a blob like `make demo`'s broken astronaut video reads same-person 0 %,
emotion "no face", and is flagged `valid: false` with why in metrics.json, metrics.md, the W&B summary (kept out of
the eval/<metric> headline) and `dtl compare`'s HTML report; a faithfully animated portrait reads same-person >= 95 %
and valid. `--controls` scores the control videos beside the user's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from talking_video import speak
from test_metric_controls import face_square

import experiments.evaluate.validity
from dtl_foundation.media.audio import audio_duration
from experiments.evaluate.controls import animate, blob
from metrics.validity import Validity, combine, judge
from dtl_foundation.media.video_write import write_video

REPO = Path(__file__).resolve().parents[1]
FRAMES_SCORED = 6


@pytest.fixture(scope="module")
def portrait_videos(tmp_path_factory) -> dict[str, Path]:
    """The astronaut portrait, a faithful animation of it and the same frames blurred to an orange blob, with speech;
    happy by name, as `make demo` names its video."""
    from skimage import data

    work = tmp_path_factory.mktemp("portrait_videos")
    still = face_square(data.astronaut())
    Image.fromarray(still).save(work / "portrait.png")
    speech = speak("The portrait speaks a short sentence.", work / "speech.wav")
    frames = animate(still, round(audio_duration(speech) * 25), still.shape[:2])
    for name, images in (("faithful", frames), ("blob", blob(frames))):
        write_video(work / name / "001_happy_level_3.mp4", images, 25.0, speech)
    return {"portrait": work / "portrait.png", "faithful": work / "faithful", "blob": work / "blob"}


def dtl_eval(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "experiments.cli", "eval", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


def test_validity_rule_needs_half_the_frames_and_faces_that_pass_the_check():
    assert judge(50, 50, 50, 0).valid
    assert judge(50, 25, 25, 2).valid  # half scored, 8 % failing the check: tolerated
    few = judge(50, 24, 24, 0)
    assert not few.valid and "scored on 24 of 50" in few.why
    unconfirmed = judge(50, 50, 50, 6)
    assert not unconfirmed.valid and "6 of 50 checked frames fail the face check" in unconfirmed.why
    overall = combine([judge(10, 10, 10, 0), few])
    assert not overall.valid and overall.frames == 60
    assert overall.why.startswith("1 of 2 videos not valid (first: scored on 24")


def test_blob_is_flagged_everywhere_and_the_faithful_portrait_reads_the_same_person(portrait_videos, tmp_path,
                                                                                   monkeypatch):
    results = {}
    for name in ("faithful", "blob"):
        out = tmp_path / name
        done = dtl_eval(str(portrait_videos[name]), "--portrait", str(portrait_videos["portrait"]), "--metrics",
                        "identity", "emotion", "--sample-frames", str(FRAMES_SCORED), "--group", "validity",
                        "--name", name, "--out", str(out))
        assert done.returncode == 0, done.stderr
        results[name] = (json.loads((out / "metrics.json").read_text()), (out / "metrics.md").read_text(), out)

    faithful, markdown, _ = results["faithful"]
    assert faithful["metrics"]["identity_same_person"] >= 0.95
    assert faithful["validity"]["overall"]["identity"]["valid"] and faithful["not_valid"] == {}
    assert faithful["per_video"][0]["emotion_predicted"] == "happy"
    assert "~~" not in markdown and "| identity_same_person | 1 | higher | 1 | yes | 6/6 | 6/6 pass |" in markdown

    broken, markdown, out = results["blob"]
    row = broken["per_video"][0]
    assert row["identity_same_person"] == 0 and row["emotion_predicted"] == "no face"
    assert row["identity_valid"] is False and row["emotion_valid"] is False
    for group in ("identity", "emotion"):
        verdict = broken["validity"]["per_video"]["001_happy_level_3"][group]
        assert not verdict["valid"] and f"scored on 0 of {FRAMES_SCORED} frames with a face" in verdict["why"]
    assert set(broken["not_valid"]) >= {"identity_same_person", "emotion_accuracy", "emotion_confidence"}
    assert "| identity_same_person | ~~0~~ not valid |" in markdown and "**NO**" in markdown

    # W&B: the blob's numbers are kept under eval/not_valid/, never as the eval/<metric> headline
    from experiments.compare.run_logs import inspect_wandb_file

    [run_file] = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    summary = inspect_wandb_file(run_file, summary=True)["summary"]
    assert "eval/identity_same_person" not in summary and "eval/emotion_accuracy" not in summary
    assert summary["eval/not_valid/identity_same_person"] == 0 and summary["eval/valid/identity"] == 0
    assert "scored on 0 of" in summary["eval/validity/identity"]

    # dtl compare's HTML report names the run whose number is not valid
    from experiments.compare.table import build_table
    from experiments.compare.report_html import render_report
    from experiments.compare.run_logs import wandb_group_runs

    runs = wandb_group_runs(tmp_path / "faithful" / "wandb", "validity") + wandb_group_runs(out / "wandb", "validity")
    table = build_table(runs, metrics=["eval/identity_same_person"])
    page = render_report(table)
    assert "eval/identity_same_person of" in page and "NOT VALID in blob" in page

    # without the validity rule the blob would read as a valid (if poor) score: the safeguard is what flags it
    def always_valid(frames, scored, checked, failed_check, face_based=True) -> Validity:
        return Validity(frames, scored, checked, failed_check, valid=True, why="")

    monkeypatch.setattr(experiments.evaluate.validity, "judge", always_valid)
    from experiments.evaluate.command import evaluate
    from experiments.evaluate.scorers import EvalOptions

    unguarded = evaluate(portrait_videos["blob"], None, EvalOptions(metrics=("identity",), portrait=portrait_videos[
        "portrait"], sample_frames=FRAMES_SCORED), progress=False)
    assert unguarded["not_valid"] == {}


def test_dtl_eval_controls_scores_the_controls_beside_the_users_video(portrait_videos, tmp_path):
    out = tmp_path / "eval"
    done = dtl_eval(str(portrait_videos["faithful"]), "--portrait", str(portrait_videos["portrait"]), "--metrics",
                    "identity", "emotion", "--sample-frames", "4", "--controls", "--no-wandb", "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "metrics.json").read_text())
    controls = result["controls"]
    assert set(controls) == {"faithful", "blob", "other_person", "frozen", "audio_late_5", "audio_late_15", "noisy"}
    assert controls["faithful"]["metrics"]["identity_same_person"] == 1
    assert controls["other_person"]["metrics"]["identity_same_person"] == 0
    assert controls["blob"]["not_valid"] and controls["blob"]["per_video"][0]["emotion_predicted"] == "no face"
    assert sorted(p.name for p in (out / "controls").iterdir()) == sorted(controls)
    markdown = (out / "metrics.md").read_text()
    assert "Controls, made from your data" in markdown
    assert "| your videos | faithful | blob | other_person |" in markdown
    assert "| identity_same_person | higher | 1 | 1 | ~~0~~ | 0 |" in markdown
