"""`dtl compare` on real training runs: CSV and W&B logs, the seed table, the reports, Chromium rendering."""

from __future__ import annotations

import base64
import io
import re
import shutil
from pathlib import Path

import numpy as np
from scipy import stats
import pytest
import torch
from PIL import Image

from experiments.compare.command import main as compare
from experiments.compare.run_logs import RunLog
from experiments.compare.table import UNRANKED, build_table, format_cell, format_delta, infer_goal
from experiments.compare.report_html import TABLE_BACKGROUND
from experiments.compare.run_logs import RunLogError, read_run, read_wandb_files, wandb_files
from experiments.compare.summary import final_metrics
from experiments.train import train
from browser import screenshot
from training_helpers import compose_train


@pytest.fixture(scope="module")
def outputs(tiny_corpus, tmp_path_factory) -> Path:
    """Real runs through the spine: baseline_demo with seeds 1 and 2, and small_net (a narrower network) with
    seed 1, trained in two attempts (stopped at step 4, then resumed to 6) like a requeued job."""
    root = tmp_path_factory.mktemp("compare")
    common = ["experiment=baseline_demo", f"paths.output_root={root / 'outputs'}", f"data.corpus_dir={tiny_corpus}",
              "data.build_demo=false", f"paths.cache_dir={root / 'cache'}", "debug=fast", "trainer.accelerator=cpu",
              "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
              "callbacks.progress_bar.refresh_rate=0"]
    small = ["experiment_name=small_net", "model.net.hidden=32", "run_id=seed1", "seed=1"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network trains faster on one thread than on two contended ones
    try:
        for overrides in (["run_id=seed1", "seed=1"], ["run_id=seed2", "seed=2"],
                          [*small, "trainer.max_steps=4", "test=false"], small):
            train(compose_train(common + overrides))
    finally:
        torch.set_num_threads(threads)
    return root / "outputs"


def run_compare(args: list[str], capsys) -> tuple[int, str, str]:
    code = compare([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def copy_run(run_dir: Path, dest: Path, without: tuple[str, ...]) -> Path:
    shutil.copytree(run_dir, dest, ignore=lambda d, names: [n for n in names if Path(d) == run_dir and n in without])
    return dest


def test_goal_is_inferred_from_the_metric_name():
    expected = {"test/mouth_error": "min", "val/loss": "min", "test/lse_d": "min", "test/fid": "min",
                "test/lpips": "min", "test/upper_face_dd": "min", "test/sync_loss": "min", "test/lse_c": "max",
                "test/sync": "max", "test/emotion_accuracy": "max", "test/psnr": "max", "test/ssim": "max",
                "test/sync_lag": UNRANKED, "test/diversity": None, "test/boundary_velocity_ratio_truth": UNRANKED,
                "test/source/mouth_error": UNRANKED, "test/source/boundary_velocity_ratio": UNRANKED,
                "test/boundary_velocity_ratio": None}
    assert {m: infer_goal(m) for m in expected} == expected


def test_references_and_lags_are_shown_but_never_ranked_and_explained_in_one_note():
    def run(name: str, lr: float, seed: int, mouth: float) -> RunLog:
        final = {"test/mouth_error": mouth, "test/source/mouth_error": 0.5 - mouth, "test/sync_lag": mouth * 10,
                 "test/boundary_velocity_ratio_truth": 1.0 - mouth, "test/diversity": mouth}
        return RunLog(name=name, location=f"/runs/{name}", source="csv",
                      config={"experiment_name": "refiner", "model": {"lr": lr}, "seed": seed}, final=final, curves={})

    runs = [run("a1", 0.1, 1, 0.10), run("a2", 0.1, 2, 0.12), run("b1", 0.2, 1, 0.20), run("b2", 0.2, 2, 0.23)]
    table = build_table(runs, baseline="refiner [lr=0.1]")
    references = ("test/source/mouth_error", "test/sync_lag", "test/boundary_velocity_ratio_truth")
    assert table.best["test/mouth_error"] == "refiner [lr=0.1]"
    assert all(table.best[m] is None and table.improves("refiner [lr=0.2]", m) is None for m in references)
    assert table.improves("refiner [lr=0.2]", "test/mouth_error") is False
    unranked = [n for n in table.notes if n.startswith("not ranked")]
    assert len(unranked) == 1 and all(m in unranked[0] for m in references)
    assert [n for n in table.notes if "which way is better" in n] == [
        "test/diversity: which way is better is not known from its name; pass --goal test/diversity=min|max"]
    ranked = build_table(runs, goals=["test/source/mouth_error=min"], baseline="refiner [lr=0.1]")
    assert ranked.best["test/source/mouth_error"] == "refiner [lr=0.2]"


def test_single_seed_variants_that_differ_only_in_input_paths_get_a_hint_to_pool_them():
    def refiner(seed: int, **settings) -> RunLog:
        config = {"experiment_name": "lip_refiner", "seed": seed, "model": settings}
        return RunLog(name=f"r{seed}", location=f"/runs/r{seed}", source="csv", config=config,
                      final={"test/mouth_error": 0.1 * seed}, curves={})

    per_seed = [refiner(s, emodiff_run=f"/work/outputs/emodiff_demo/ablation-{s}") for s in (1, 2, 3)]
    table = build_table(per_seed)
    assert len(table.variants) == 3
    hint = [n for n in table.notes if "pools them" in n]
    assert len(hint) == 1 and "--ignore model.emodiff_run" in hint[0] and "seeds 1, 2, 3" in hint[0]
    pooled = build_table(per_seed, ignore=("model.emodiff_run",))
    assert [len(v.runs) for v in pooled.variants] == [3] and not [n for n in pooled.notes if "pools them" in n]
    # Not for a real difference (a number), nor for runs of one seed.
    assert not [n for n in build_table([refiner(s, lr=0.1 * s) for s in (1, 2)]).notes if "pools them" in n]
    same_seed = [refiner(1, emodiff_run=f"/work/outputs/emodiff_demo/{r}") for r in ("a", "b")]
    assert not [n for n in build_table(same_seed).notes if "pools them" in n]


@pytest.mark.slow
def test_csv_and_wandb_logs_of_a_run_agree(outputs, tmp_path):
    for run_dir, attempts in ((outputs / "baseline_demo" / "seed1", 1), (outputs / "small_net" / "seed1", 2)):
        from_csv = read_run(run_dir)
        assert from_csv.source == "csv" and len(list(run_dir.glob("csv/attempt_*"))) == attempts
        assert from_csv.final == final_metrics(run_dir)
        assert (from_csv.experiment, from_csv.seed) == (run_dir.parent.name, 1)
        files = wandb_files(run_dir)
        assert len(files) == attempts
        from_wandb = read_wandb_files(files, str(run_dir))
        assert from_wandb.group == run_dir.parent.name
        assert (from_wandb.config["experiment_name"], from_wandb.config["seed"]) == (run_dir.parent.name, 1)
        logged = [m for m in from_csv.final if m.startswith(("test/", "val/"))]
        assert "test/mouth_error" in logged and "val/mouth_error" in logged
        assert {m: from_wandb.final[m] for m in logged} == pytest.approx({m: from_csv.final[m] for m in logged})
        for name in ("val/mouth_error", "val/loss", "train/loss"):
            csv_curve, wandb_curve = from_csv.curves[name], from_wandb.curves[name]
            assert len(csv_curve.steps) >= 2
            assert csv_curve.steps.tolist() == wandb_curve.steps.tolist()
            np.testing.assert_allclose(wandb_curve.values, csv_curve.values, rtol=1e-6)
        assert from_csv.curves["train/loss"].steps.max() == 5  # the resumed attempt ran to the end

    run_dir = outputs / "small_net" / "seed1"
    wandb_only = read_run(copy_run(run_dir, tmp_path / "small_net" / "seed1", without=("csv", "meta")))
    assert wandb_only.source == "wandb-offline"
    assert (wandb_only.experiment, wandb_only.seed) == ("small_net", 1)  # config from the W&B run files
    assert wandb_only.final["test/mouth_error"] == pytest.approx(final_metrics(run_dir)["test/mouth_error"])
    assert wandb_only.images and wandb_only.images[-1].name.startswith("test_blendshapes")


@pytest.mark.slow
def test_table_groups_seeds_marks_best_and_deltas(outputs, tmp_path, capsys):
    code, out, err = run_compare([outputs, "--out", tmp_path], capsys)
    assert code == 0, err
    markdown = (tmp_path / "report.md").read_text()
    baseline = [final_metrics(outputs / "baseline_demo" / s) for s in ("seed1", "seed2")]
    small = final_metrics(outputs / "small_net" / "seed1")
    for metric in ("test/mouth_error", "test/loss"):
        values = [m[metric] for m in baseline]
        mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
        assert std > 0
        interval = stats.t.ppf(0.975, 1) * std / np.sqrt(2)  # 95 % interval of the mean of two seeds
        best_is_baseline = mean < small[metric]  # both metrics: lower is better
        expected_baseline = f"{mean:.4f} ± {interval:.4f}" + (" ★" if best_is_baseline else "")
        expected_small = f"{small[metric]:.4f}" + ("" if best_is_baseline else " ★")
        diff = small[metric] - mean
        expected_delta = f"{diff:+.4f} ({diff / abs(mean):+.1%})"
        assert expected_baseline in out and expected_small in out and expected_delta in out, out
        table = markdown.split("\n\n")[2]  # title, summary line, then the comparison table
        rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()}
        assert expected_baseline in rows["baseline_demo (baseline)"]
        assert f"{expected_small} | {expected_delta}" in rows["small_net"]
    assert rows["baseline_demo (baseline)"].startswith("| baseline_demo (baseline) | 2 | 1, 2 |")
    assert rows["small_net"].startswith("| small_net | 1 | 1 |")
    settings = markdown.split("## Settings that differ between variants", 1)[1].split("## Runs", 1)[0]
    assert "| model.net.hidden | 128 | 32 |" in settings  # the setting that makes the variants differ
    identity = r"^\| (run_id|seed|data\.seed|paths\.|logger\.\w+\.(id|version|name) )"
    assert not re.search(identity, settings, flags=re.M), settings
    assert markdown.count("| csv | ") == 3



def test_piped_output_keeps_each_variant_on_one_line(outputs, capsys, monkeypatch):
    """Piped to a log (no terminal, no $COLUMNS), the table is not folded into 80 columns."""
    monkeypatch.delenv("COLUMNS", raising=False)
    metrics = ("test/mouth_error", "test/loss", "val/mouth_error")
    code, out, err = run_compare([outputs, *[a for m in metrics for a in ("--metric", m)]], capsys)
    assert code == 0, err
    small = final_metrics(outputs / "small_net" / "seed1")
    [line] = [line for line in out.splitlines() if "small_net" in line]
    assert len(line) > 80 and all(f"{small[m]:.4f}" in line for m in metrics), out

@pytest.mark.slow
def test_metric_choice_and_clear_errors_on_real_runs(outputs, tmp_path, capsys):
    code, out, err = run_compare([outputs, "--metric", "val/mouth_error", "--metric", "test/*loss",
                                  "--baseline", "small_net"], capsys)
    assert code == 0, err
    header = next(line for line in out.splitlines() if "variant" in line)
    assert "val/mouth_error ↓" in header and "test/loss ↓" in header and "test/mouth_error" not in header
    assert "small_net (baseline)" in out

    code, _, err = run_compare([outputs, "--metric", "test/nope"], capsys)
    assert code == 1 and "unknown metric 'test/nope'" in err and "test/mouth_error" in err and "val/loss" in err
    code, _, err = run_compare([outputs, "--baseline", "no_such_variant"], capsys)
    assert code == 1 and "is not a variant" in err and "small_net" in err

    broken = tmp_path / "sweep"  # one good run and one that died before logging: the good one is compared
    shutil.copytree(outputs / "small_net", broken / "small_net")
    (broken / "crashed" / "meta" / "attempt_0").mkdir(parents=True)
    (broken / "crashed" / "meta" / "attempt_0" / "config.yaml").write_text("experiment_name: crashed\nseed: 3\n")
    code, out, err = run_compare([broken], capsys)
    assert code == 0 and "small_net" in out
    assert f"skipped {broken / 'crashed'}: a run directory with no logs" in err


@pytest.mark.slow
def test_wandb_group_from_offline_run_files(outputs, tmp_path, capsys):
    code, _, err = run_compare(["--group", "baseline_demo", "--wandb-dir", outputs, "--out", tmp_path], capsys)
    assert code == 0, err
    runs = (tmp_path / "report.md").read_text().split("## Runs", 1)[1]
    assert runs.count("| baseline_demo |") == 2 and "small_net" not in runs

    elsewhere = tmp_path / "synced"  # a run whose CSV logs are gone: read from its W&B files alone
    copy_run(outputs / "small_net" / "seed1", elsewhere / "small_net" / "seed1", without=("csv",))
    code, out, err = run_compare(["--group", "small_net", "--wandb-dir", elsewhere, "--out", tmp_path], capsys)
    assert code == 0, err
    assert "| wandb-offline |" in (tmp_path / "report.md").read_text()
    assert f"{final_metrics(outputs / 'small_net' / 'seed1')['test/mouth_error']:.4f}" in out

    code, _, err = run_compare(["--group", "no_such_group", "--wandb-dir", outputs], capsys)
    assert code == 1 and "no run under" in err and "baseline_demo" in err and "small_net" in err


def data_images(document: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(data)))
            for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', document)]


@pytest.mark.slow
def test_html_report_is_self_contained(outputs, tmp_path, capsys):
    assert run_compare([outputs, "--out", tmp_path], capsys)[0] == 0
    document = (tmp_path / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", document)
    assert not re.search(r"<script|<link|@import|url\(", document)
    images = data_images(document)
    test_metrics = sorted({m for run in ("baseline_demo/seed1", "small_net/seed1")
                           for m in final_metrics(outputs / run) if m.startswith("test/")})
    curves = re.findall(r'alt="(val/[^"]+) over steps"', document)
    # boundary continuity (long audio) and diversity (two draws a window) are measured in the test phase only
    test_only = ("/boundary_", "/diversity")
    assert sorted(curves) == sorted(m.replace("test/", "val/") for m in test_metrics
                                    if not any(part in m for part in test_only))
    samples = re.findall(r'alt="([^"]+): (seed\d), (test_blendshapes_step\d+\.png)"', document)
    assert {s[0] for s in samples} == {"baseline_demo", "small_net"}
    assert len(images) == len(curves) + len(samples)
    assert all(image.width >= 300 and image.height >= 200 for image in images)
    sample = images[-1].convert("L")
    assert np.asarray(sample).std() > 10  # a real figure, not a blank frame


def test_videos_side_by_side_playable_with_their_strips(outputs, tmp_path, capsys):
    """--video LABEL=MP4: each video inline (its bytes, sound included), in order, with the strip beside it."""
    from talking_video import talking_video

    videos = {}
    for i, label in enumerate(("avatar", "warp")):
        folder = tmp_path / label
        folder.mkdir()
        videos[label] = talking_video(folder, "Side by side in the report.", seed=i)
    strip = np.random.default_rng(0).integers(0, 255, (64, 6 * 64, 3), dtype=np.uint8)
    Image.fromarray(strip).save(videos["warp"].with_name("talking_strip.png"))
    out = tmp_path / "report"
    args = [outputs, "--out", out] + [f"--video={label}={path}" for label, path in videos.items()]
    assert run_compare(args, capsys)[0] == 0
    document = (out / "report.html").read_text()
    sources = re.findall(r'<video controls preload="metadata" src="data:video/mp4;base64,([^"]+)"', document)
    assert [base64.b64decode(s) for s in sources] == [p.read_bytes() for p in videos.values()]
    assert re.findall(r"<figcaption>(\w+): talking.mp4</figcaption>", document) == ["avatar", "warp"]
    assert 'alt="warp: frames"' in document and 'alt="avatar: frames"' not in document

    code, _, err = run_compare([outputs, "--out", tmp_path / "bad", "--video", f"warp={tmp_path / 'gone.mp4'}"],
                               capsys)
    assert code == 1 and "gone.mp4 does not exist" in err and not (tmp_path / "bad").exists()
    assert "<h2>Videos</h2>" not in (run_compare([outputs, "--out", tmp_path / "none"], capsys),
                                     (tmp_path / "none" / "report.html").read_text())[1]


@pytest.mark.slow
def test_chromium_renders_the_table(outputs, tmp_path, capsys):
    assert run_compare([outputs, "--out", tmp_path], capsys)[0] == 0
    report = tmp_path / "report.html"
    without_table = tmp_path / "without_table.html"
    stripped, removed = re.subn(r'<table class="comparison">.*?</table>', "", report.read_text(), flags=re.S)
    assert removed == 1
    without_table.write_text(stripped)

    colour = np.array([int(TABLE_BACKGROUND[i:i + 2], 16) for i in (1, 3, 5)])
    pixels = {}
    for name, page in (("report", report), ("without_table", without_table)):
        shot = screenshot(page, tmp_path / f"{name}.png")
        pixels[name] = (shot, np.all(np.abs(shot - colour) <= 2, axis=-1))
    shot, table_mask = pixels["report"]
    assert pixels["without_table"][1].sum() < 50  # the colour belongs to the table alone
    assert table_mask.sum() > 20_000, "the comparison table did not render (too few pixels of its background)"
    rows, cols = np.nonzero(table_mask)
    region = shot[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    text = np.all(region < 90, axis=-1).sum()
    assert text > 500, "the table's cells hold no text"
    assert rows.max() - rows.min() > 40  # two variant rows


def test_clear_errors_without_runs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run_compare([tmp_path / "empty"], capsys)
    assert code == 1 and "no runs under it" in err

    code, _, err = run_compare([tmp_path / "missing"], capsys)
    assert code == 1 and f"{tmp_path / 'missing'}: no such file or directory" in err

    crashed = tmp_path / "outputs" / "baseline_demo" / "crashed"
    (crashed / "meta" / "attempt_0").mkdir(parents=True)
    (crashed / "meta" / "attempt_0" / "config.yaml").write_text("experiment_name: baseline_demo\nseed: 1\n")
    code, _, err = run_compare([crashed], capsys)
    assert code == 1 and f"{crashed}: a run directory with no logs" in err
    code, _, err = run_compare([tmp_path / "outputs"], capsys)
    assert code == 1 and "none of its 1 run directories has logs" in err

    bad_csv = tmp_path / "bad" / "csv" / "attempt_0" / "metrics.csv"
    bad_csv.parent.mkdir(parents=True)
    bad_csv.write_text("epoch,step,test/loss\n0,1,0.5\n0,2,not-a-number\n")
    with pytest.raises(RunLogError, match=re.escape(f"{bad_csv}:3")):
        read_run(bad_csv.parents[2])

    bad_wandb = tmp_path / "bad_wandb" / "wandb" / "offline-run-20260101_000000-abcd" / "run-abcd.wandb"
    bad_wandb.parent.mkdir(parents=True)
    bad_wandb.write_bytes(b"not a transaction log")
    with pytest.raises(RunLogError, match=re.escape(f"{bad_wandb}: not a readable W&B run file")):
        read_run(bad_wandb.parents[2])


def test_cell_and_delta_formatting():
    from experiments.compare.table import Cell

    half_width = stats.t.ppf(0.975, 1) * np.std([0.2, 0.3], ddof=1) / np.sqrt(2)
    assert format_cell(Cell([0.2, 0.3]), 2) == f"0.2500 ± {half_width:.4f}"
    assert format_cell(Cell([0.2]), 2) == "0.2000 (n=1)"
    assert format_cell(None, 2) == "-"
    assert format_delta((-0.05, -0.2)) == "-0.0500 (-20.0%)"


def test_a_paired_test_over_seeds_finds_a_small_consistent_difference_that_seed_noise_hides():
    """Seeds move both variants alike by far more than the variants differ: pairing by seed sees the difference,
    an unpaired comparison of the same values (the broken variant) does not."""
    from experiments.compare.significance import paired_over_seeds
    from experiments.compare.table import Cell

    seed_effect = {1: 0.00, 2: 0.05, 3: -0.04}
    reference = {s: 0.30 + e for s, e in seed_effect.items()}
    worse = {s: 0.30 + e + 0.01 + 0.001 * s for s, e in seed_effect.items()}
    test = paired_over_seeds(worse, reference)
    assert test.n == 3 and test.significant and test.mean_difference == pytest.approx(0.012)
    assert stats.ttest_ind(list(worse.values()), list(reference.values())).pvalue > 0.5
    assert not paired_over_seeds({s: 0.30 + e for s, e in seed_effect.items()} | {1: 0.31}, reference).significant
    assert paired_over_seeds({1: 0.3}, reference) is None  # one shared seed: no test
    assert paired_over_seeds(reference, reference).p_value == 1.0
    cell = Cell(list(worse.values()), list(worse))
    assert format_delta((0.012, 0.04), test).endswith(f"p={test.p_value:.2g} *")
    assert cell.interval == pytest.approx(stats.t.ppf(0.975, 2) * np.std(cell.values, ddof=1) / np.sqrt(3))
