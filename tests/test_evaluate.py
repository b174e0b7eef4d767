"""`dtl eval` on real rendered demo videos with espeak-ng speech: a reference scored against itself is perfect, a
degraded copy scores worse, weights that are absent are reported (never faked), outputs and the W&B eval run exist."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from talking_video import write_video
from test_video_emotion_classifier import video_corpus  # noqa: F401  (shared session fixture)

from experiments.evaluate.command import evaluate
from experiments.evaluate.inputs import EvaluationInputError, match_videos
from experiments.evaluate.scorers import EvalOptions
from dtl_foundation.media.video_read import read_video

REPO = Path(__file__).resolve().parents[1]
CLIPS = ("happy_level_3_001", "sad_level_3_001")


@pytest.fixture(scope="module")
def references(video_corpus, tmp_path_factory) -> dict:  # noqa: F811  (the fixture imported above)
    """Two rendered demo clips of one speaker in MEAD layout, a byte-identical generated copy of each, and a degraded
    copy of each (blurred, re-encoded with the same speech)."""
    from datamodules.demo.videos import render_demo_videos

    speaker = sorted(p.name for p in video_corpus.iterdir() if p.is_dir())[0]
    ids = [f"{speaker}_{clip}" for clip in CLIPS]
    render_demo_videos(video_corpus, size=128, clip_ids=ids, progress=False)
    work = tmp_path_factory.mktemp("eval_videos")
    reference, same, degraded = work / "reference", work / "same", work / "degraded"
    for clip in CLIPS:
        emotion, _, level, sentence = clip.split("_")
        relative = Path(speaker) / "video" / "front" / emotion / f"level_{level}" / f"{sentence}.mp4"
        source = video_corpus / relative
        for folder in (reference, same):
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, folder / relative)
        frames = read_video(source).frames.astype(np.float64)
        blurred = gaussian_filter(frames, sigma=(0, 1.5, 1.5, 0))  # no noise: noise would read as sharp edges to CPBD
        (degraded / relative).parent.mkdir(parents=True, exist_ok=True)
        audio = video_corpus / speaker / "audio" / emotion / f"level_{level}" / f"{sentence}.wav"
        write_video(degraded / relative, np.clip(blurred, 0, 255).astype(np.uint8), audio=audio)
    return {"reference": reference, "same": same, "degraded": degraded, "speaker": speaker}


def test_videos_match_by_relative_path_or_clip_id(tmp_path):
    reference = tmp_path / "ref" / "M003" / "video" / "front" / "happy" / "level_3" / "001.mp4"
    reference.parent.mkdir(parents=True)
    reference.write_bytes(b"")
    by_id = tmp_path / "gen" / "M003_happy_level_3_001.mp4"
    by_id.parent.mkdir()
    by_id.write_bytes(b"")
    [pair] = match_videos(tmp_path / "gen", tmp_path / "ref")
    assert pair.reference == reference and pair.emotion == "happy" and pair.name == "M003_happy_level_3_001"
    (tmp_path / "gen" / "M003_sad_level_3_001.mp4").write_bytes(b"")
    with pytest.raises(EvaluationInputError, match="M003_sad_level_3_001.mp4: no reference"):
        match_videos(tmp_path / "gen", tmp_path / "ref")
    with pytest.raises(EvaluationInputError, match="no such file or folder"):
        match_videos(tmp_path / "missing")


@pytest.mark.slow
def test_reference_against_itself_is_perfect_and_a_degraded_copy_scores_worse(references):
    options = EvalOptions(metrics=("psnr", "ssim", "lmd", "cpbd", "identity", "emotion"), sample_frames=6)
    same = evaluate(references["same"], references["reference"], options, progress=False)
    worse = evaluate(references["degraded"], references["reference"], options, progress=False)
    a, b = same["metrics"], worse["metrics"]
    print("itself:", {k: round(v, 4) for k, v in a.items()}, "\ndegraded:", {k: round(v, 4) for k, v in b.items()},
          "\nseconds:", {k: round(v, 2) for k, v in worse["seconds"].items()})
    assert a["psnr"] == float("inf") and np.isfinite(b["psnr"]) and b["psnr"] < 40
    assert a["ssim"] == pytest.approx(1.0, abs=1e-5) and b["ssim"] < a["ssim"] - 0.02
    assert a["m_lmd"] == 0 and a["f_lmd"] == 0 and b["m_lmd"] > 0 and b["f_lmd"] > 0
    assert b["cpbd"] < a["cpbd"]
    assert a["identity_cosine"] > 0.95 and b["identity_cosine"] <= a["identity_cosine"]
    assert same["counts"]["psnr"] == 2 and same["counts"]["emotion_accuracy"] == 2
    assert {row["emotion"] for row in same["per_video"]} == {"happy", "sad"}
    assert "FER2013" in same["notes"]["emotion"] and "first frame" in same["notes"]["identity"]


def seeded_syncnet(path: Path) -> Path:
    from metrics.syncnet import SyncNet

    torch.manual_seed(0)
    torch.save(SyncNet().state_dict(), path)
    return path


@pytest.mark.slow
def test_dtl_eval_writes_json_csv_markdown_and_an_eval_run_in_wandb(references, tmp_path):
    from experiments.compare.run_logs import inspect_wandb_file, wandb_run_record

    out = tmp_path / "eval"
    torch_home = tmp_path / "torch_home"  # no standard weights here: LPIPS must be reported as not computed
    env = {**os.environ, "TORCH_HOME": str(torch_home), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "experiments.cli", "eval", str(references["degraded"]),
                           "--reference", str(references["reference"]), "--metrics", "lse", "psnr", "ssim", "lpips",
                           "--syncnet-weights", str(seeded_syncnet(tmp_path / "syncnet_seeded.model")),
                           "--face-stride", "5", "--out", str(out), "--group", "emodiff_demo"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "metrics.json").read_text())
    metrics = result["metrics"]
    assert set(metrics) >= {"lse_c", "lse_d", "av_offset", "psnr", "ssim"}
    assert np.isfinite(metrics["lse_c"]) and metrics["lse_d"] > 0 and abs(metrics["av_offset"]) <= 15
    assert "lpips" not in metrics and "alexnet-owt-7be5be79.pth not found" in result["skipped"]["lpips"]
    assert "lpips not computed" in done.stderr
    rows = list(csv.DictReader((out / "per_video.csv").open()))
    assert len(rows) == 2 and {"video", "lse_c", "psnr", "ssim"} <= set(rows[0])
    markdown = (out / "metrics.md").read_text()
    assert "| psnr |" in markdown and "lpips" in markdown and "higher" in markdown

    [run_file] = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    record = wandb_run_record(run_file)
    assert record["job_type"] == "eval" and record["run_group"] == "emodiff_demo"
    summary = inspect_wandb_file(run_file, summary=True)["summary"]
    assert summary["eval/lse_c"] == {"max": pytest.approx(metrics["lse_c"], rel=1e-6)}
    assert summary["eval/lse_d"] == {"min": pytest.approx(metrics["lse_d"], rel=1e-6)}
    assert summary["eval/psnr"] == {"max": pytest.approx(metrics["psnr"], rel=1e-6)}
    assert "alexnet" in summary["eval/skipped/lpips"]


def test_absent_syncnet_weights_skip_only_lse_and_unreadable_videos_are_named(references, tmp_path):
    generated = tmp_path / "generated"
    shutil.copytree(references["same"], generated)
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "empty_torch_home"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "experiments.cli", "eval", str(generated), "--metrics", "lse",
                           "cpbd", "--sample-frames", "2", "--out", str(tmp_path / "out"), "--no-wandb"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert "syncnet_v2.model not found" in result["skipped"]["lse"]
    assert "lse_c" not in result["metrics"] and result["metrics"]["cpbd"] > 0

    broken = generated / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    done = subprocess.run([sys.executable, "-m", "experiments.cli", "eval", str(generated), "--metrics", "cpbd",
                           "--sample-frames", "2", "--out", str(tmp_path / "out2"), "--no-wandb"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and f"dtl eval: error: {broken}: unreadable video" in done.stderr
    result = evaluate(generated, options=EvalOptions(metrics=("cpbd",), sample_frames=2), on_error="skip",
                      progress=False)
    assert list(result["failed"]) == [str(broken)] and result["counts"]["cpbd"] == 2


def test_wandb_table_takes_videos_a_metric_could_not_score(tmp_path):
    """A video without a number (NaN: e.g. no face for the landmarks) is an empty cell of the W&B table."""
    from experiments.evaluate.report import log_to_wandb
    from experiments.compare.run_logs import inspect_wandb_file

    result = {"generated": "g", "reference": "r", "options": {}, "skipped": {},
              "metrics": {"psnr": 30.5, "m_lmd": 2.0},
              "per_video": [{"video": "a", "psnr": 30.0, "m_lmd": float("nan")},
                            {"video": "b", "psnr": 31.0, "m_lmd": 2.0}]}
    log_to_wandb(result, tmp_path, "emodiff_demo", None, None)
    [run_file] = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    summary = inspect_wandb_file(run_file, summary=True)["summary"]
    assert summary["eval/psnr"] == {"max": 30.5} and summary["eval/m_lmd"] == {"min": 2.0}


def test_a_held_output_directory_stops_a_second_dtl_eval(tmp_path):
    """Another process holds the output directory: dtl eval stops naming it and writes nothing there."""
    hold = ("import sys, time\nfrom dtl_foundation.directory_lock import hold_directory\n"
            "with hold_directory(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path / "out")], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        done = subprocess.run([sys.executable, "-m", "experiments.cli", "eval", str(tmp_path / "gen"), "--metrics",
                               "cpbd", "--out", str(tmp_path / "out"), "--no-wandb"],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1 and f"in use by pid {holder.pid}" in done.stderr, done.stderr
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_metrics_json_is_strict_json_with_inf_and_nan(tmp_path):
    """Python's json writes Infinity and NaN, which strict parsers (JavaScript, jq) refuse; write_outputs does not."""
    from experiments.evaluate.report import write_outputs

    def strict(text: str):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))

    result = {"generated": "g", "reference": "r", "options": {}, "skipped": {}, "failed": {}, "counts": {"psnr": 2},
              "notes": {}, "seconds": {"psnr": 1.0},
              "metrics": {"psnr": float("inf"), "lse_d": float("nan"), "range": (float("-inf"), 1.0)},
              "per_video": [{"video": "a.mp4", "psnr": float("inf")}, {"video": "b.mp4", "psnr": float("nan")}]}
    broken = json.dumps(result)  # the broken variant: plain json.dumps
    with pytest.raises(pytest.fail.Exception, match="Infinity"):
        strict(broken)
    paths = write_outputs(tmp_path, result)
    written = strict(paths["json"].read_text())
    assert written["metrics"] == {"psnr": "inf", "lse_d": "nan", "range": ["-inf", 1.0]}
    assert [r["psnr"] for r in written["per_video"]] == ["inf", "nan"]
