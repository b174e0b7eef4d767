"""The `dtl` command: help lists every subcommand; eval names a missing input; data tools run on a real corpus."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def dtl(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_help_lists_every_subcommand():
    out = dtl("--help")
    assert out.returncode == 0
    for name in ("train", "eval", "generate", "sweep", "compare", "submit", "data", "weights", "export"):
        assert f"  {name}" in out.stdout


def test_weights_check_lists_expected_paths_and_flags_wrong_files(tmp_path):
    env_home = tmp_path / "torch_home"
    (env_home / "hub" / "checkpoints").mkdir(parents=True)
    (env_home / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth").write_bytes(b"not the real weights")
    out = subprocess.run([sys.executable, "-m", "experiments.cli", "weights", "check", "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "TORCH_HOME": str(env_home)})
    assert out.returncode == 1
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["fid_inception"]["status"] == "missing"
    inception = env_home / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    assert rows["fid_inception"]["path"] == str(inception)
    assert rows["alexnet"]["status"] == "checksum_mismatch"
    assert set(rows) >= {"fid_inception", "alexnet", "vgg16", "syncnet_v2"}


def test_eval_is_built_and_names_a_missing_folder(tmp_path):
    missing = tmp_path / "generated"
    out = dtl("eval", str(missing), "--no-wandb")
    assert out.returncode == 1 and f"dtl eval: error: {missing}: no such file or folder" in out.stderr
    assert "not yet built" not in out.stderr
    help_text = dtl("eval", "--help")
    assert help_text.returncode == 0 and "--reference" in help_text.stdout and "--syncnet-weights" in help_text.stdout


def test_data_scan_and_features_on_the_tiny_corpus(tiny_corpus, tmp_path):
    manifest = tmp_path / "m.jsonl"
    out = dtl("data", "scan", str(tiny_corpus), "--out", str(manifest))
    assert out.returncode == 0, out.stderr
    header = json.loads(manifest.read_text().splitlines()[0])
    assert header["synthetic"] is True
    assert (tmp_path / "m.csv").is_file()
    out = dtl("data", "features", str(manifest), "--cache", str(tmp_path / "cache"), "--workers", "0")
    assert out.returncode == 0, out.stderr
    first = json.loads(out.stdout.strip().splitlines()[-1])
    out = dtl("data", "features", str(manifest), "--cache", str(tmp_path / "cache"), "--workers", "0")
    second = json.loads(out.stdout.strip().splitlines()[-1])
    assert first["computed"] == 4 * 22 * 2 and second["computed"] == 0 and second["cached"] == 4 * 22 * 2


def test_data_scan_names_the_bad_file(tiny_corpus, tmp_path):
    import shutil

    import numpy as np

    corpus = tmp_path / "corpus"
    shutil.copytree(tiny_corpus, corpus)
    bad = next(corpus.glob("*/arkit/happy/level_2/*.npy"))
    track = np.load(bad)
    track[3, 17] = np.nan
    np.save(bad, track)
    out = dtl("data", "scan", str(corpus))
    assert out.returncode != 0 and str(bad) in out.stderr
    out = dtl("data", "scan", str(corpus), "--on-error", "skip")
    assert out.returncode == 0, out.stderr
    report = json.loads((corpus / "manifest.skipped.json").read_text())
    assert [p["file"] for p in report["problems"]] == [str(bad)]
