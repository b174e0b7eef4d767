"""DTL_FAULT itself: what it accepts, which write it picks, and that a write it interrupts leaves no file."""

from __future__ import annotations

import pytest

from dtl_foundation import faults
from dtl_foundation.atomic_files import atomic_write_text


@pytest.fixture(autouse=True)
def fresh_counts(monkeypatch):
    monkeypatch.setattr(faults, "_fired", set())
    monkeypatch.setattr(faults, "_matches", {})


@pytest.mark.parametrize("text", ["mid_write", "somewhere:kill", "mid_write:explode", "mid_write:nan",
                                  "after_step:kill", "after_step:kill:soon"])
def test_a_malformed_fault_is_refused_naming_it(text, monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, text)
    with pytest.raises(ValueError, match=rf"DTL_FAULT='{text}'"):
        faults.armed("mid_write")


def test_the_nth_matching_write_fails_once_and_leaves_neither_file_nor_temporary(tmp_path, monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, "before_rename:enospc:*.json#2")
    atomic_write_text(tmp_path / "a.txt", "not counted")
    atomic_write_text(tmp_path / "one.json", "{}")
    with pytest.raises(OSError, match=r"No space left on device \(injected by DTL_FAULT\)"):
        atomic_write_text(tmp_path / "two.json", "{}")
    atomic_write_text(tmp_path / "three.json", "{}")  # fired once: later writes go through
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "one.json", "three.json"]


def test_a_full_disk_mid_write_leaves_the_previous_file(tmp_path, monkeypatch):
    atomic_write_text(tmp_path / "state.json", '{"state": "running"}')
    monkeypatch.setenv(faults.FAULT_ENV, "mid_write:enospc:state.json")
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "state.json", '{"state": "done"}')
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
    assert (tmp_path / "state.json").read_text() == '{"state": "running"}'


def test_a_list_of_faults_fires_each_once_at_its_own_point(tmp_path, monkeypatch):
    monkeypatch.setenv(faults.FAULT_ENV, "before_rename:enospc:a.json,mid_write:enospc:b.json#2,after_step:nan:3")
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "a.json", "{}")
    atomic_write_text(tmp_path / "a.json", "{}")
    atomic_write_text(tmp_path / "b.json", "1")
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "b.json", "2")
    atomic_write_text(tmp_path / "b.json", "3")
    assert faults.at_step(2) is None and faults.at_step(3).action == "nan" and faults.at_step(3) is None
    assert sorted(p.read_text() for p in tmp_path.iterdir()) == ["3", "{}"]
