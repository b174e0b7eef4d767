"""`make test` runs the suite on one xdist worker per core with --dist loadgroup: the tests of one group (a trained
model, the local Slurm; tests/conftest.py) must land on one worker, or the shared fixtures are built twice and two
local Slurms collide. This shows the installed pytest and pytest-xdist still group."""

from __future__ import annotations

import subprocess
import sys

GROUPED_TESTS = '''
import os
import pytest

@pytest.mark.xdist_group("shared")
@pytest.mark.parametrize("k", range(4))
def test_in_group(k):
    with open("workers.txt", "a") as log:
        print(os.environ["PYTEST_XDIST_WORKER"], file=log)

@pytest.mark.parametrize("k", range(4))
def test_free(k):
    pass
'''


def test_loadgroup_keeps_a_group_on_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(GROUPED_TESTS)
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-q",
                           "-p", "no:cacheprovider", "test_grouped.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    workers = (tmp_path / "workers.txt").read_text().split()
    assert len(workers) == 4 and len(set(workers)) == 1, f"the group's 4 tests ran on {workers}"
