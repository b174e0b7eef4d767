"""The checks `make lint` (and so `make test` and CI) runs: import-linter's contracts and ruff, on this tree and on a
copy with one upward import, which they must refuse."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dtl_foundation", "rendering", "datamodules", "metrics", "lightning_modules", "experiments")
BIN = Path(sys.executable).parent


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    # cwd first on sys.path: the copy's packages, not the editable install's, are the ones analysed
    return subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=root, capture_output=True, text=True,
                          timeout=300, env={"PATH": str(BIN), "PYTHONPATH": str(root)})


@pytest.fixture
def tree_copy(tmp_path) -> Path:
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_tree_keeps_its_import_contracts_and_ruff_rules():
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    ruff = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr


def test_an_upward_import_breaks_the_layers_contract(tree_copy):
    assert lint_imports(tree_copy).returncode == 0  # the copy as it is passes
    with open(tree_copy / "metrics" / "blendshape.py", "a") as f:
        f.write("\nfrom lightning_modules.trained_model import resolve_checkpoint  # noqa: E402, F401\n")
    done = lint_imports(tree_copy)
    assert done.returncode == 1
    assert "metrics is not allowed to import lightning_modules" in done.stdout
    assert "metrics.blendshape -> lightning_modules.trained_model" in done.stdout


def test_sibling_layers_stay_independent_and_circles_are_refused(tree_copy):
    with open(tree_copy / "datamodules" / "manifest.py", "a") as f:
        f.write("\nimport metrics.blendshape  # noqa: E402, F401\n")
    with open(tree_copy / "experiments" / "compare" / "table.py", "a") as f:
        f.write("\nimport experiments.compare.command  # noqa: E402, F401\n")
    done = lint_imports(tree_copy)
    assert done.returncode == 1
    assert "datamodules is not allowed to import metrics" in done.stdout
    circles = done.stdout.split("No import circles")[-1]
    assert "No cycles are allowed in experiments.compare" in circles and ".table -> .command" in circles


def test_make_test_runs_the_lint_first():
    plan = subprocess.run(["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, timeout=60).stdout
    assert plan.index("ruff check") < plan.index("lint-imports") < plan.index("-m pytest")
