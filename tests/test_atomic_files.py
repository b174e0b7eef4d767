"""dtl_foundation.atomic_files beyond the faults (tests/faults/test_fault_points.py): the written file's permissions
follow the umask as an ordinary write's do, a failed write names its destination, arrays are never pickled."""

from __future__ import annotations

import errno
import os
import stat

import numpy as np
import pytest

from dtl_foundation.atomic_files import atomic_path, atomic_save_npy, atomic_save_npz, atomic_write_text


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_a_written_file_gets_the_permissions_of_an_ordinary_write(tmp_path, umask):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "atomic.txt", "x")
        assert os.umask(umask) == umask  # reading the umask left it as it was
        (tmp_path / "plain.txt").write_text("x")
    finally:
        os.umask(previous)
    mode = stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode)
    assert mode == 0o666 & ~umask == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)


def test_an_object_array_is_refused_not_pickled_and_nothing_is_written(tmp_path):
    with pytest.raises(ValueError, match="allow_pickle"):
        atomic_save_npy(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object))
    assert list(tmp_path.iterdir()) == []


def test_arrays_round_trip(tmp_path):
    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64)
    atomic_save_npy(tmp_path / "a.npy", a)
    atomic_save_npz(tmp_path / "ab.npz", a=a, b=b)
    assert np.array_equal(np.load(tmp_path / "a.npy", allow_pickle=False), a)
    with np.load(tmp_path / "ab.npz", allow_pickle=False) as loaded:
        assert np.array_equal(loaded["a"], a) and np.array_equal(loaded["b"], b)


def test_a_write_error_names_the_destination_not_the_temporary_and_keeps_the_previous_file(tmp_path):
    destination = tmp_path / "state.json"
    atomic_write_text(destination, "previous")
    for raised in (OSError(errno.ENOSPC, "No space left on device"),  # as a plain write reports a full disk
                   OSError(errno.EDQUOT, "Disk quota exceeded", "TEMPORARY")):  # naming the temporary
        with pytest.raises(OSError) as error:
            with atomic_path(destination) as tmp:
                tmp.write_text("new")
                if raised.filename == "TEMPORARY":
                    raised.filename = str(tmp)
                raise raised
        assert (error.value.errno, error.value.filename) == (raised.errno, str(destination))
        assert error.value.strerror == f"{raised.strerror}; not written (a previous version is kept)"
        assert error.value.__cause__ is raised
        assert [p.name for p in tmp_path.iterdir()] == ["state.json"] and destination.read_text() == "previous"


@pytest.mark.parametrize("raised", [FileNotFoundError(errno.ENOENT, "No such file or directory", "/elsewhere/x"),
                                    OSError("no errno")])
def test_other_errors_pass_through_unchanged(tmp_path, raised):
    """An error about another file (a source being copied), or one without an errno, is not the write's to rename."""
    with pytest.raises(OSError) as error:
        with atomic_path(tmp_path / "out.bin"):
            raise raised
    assert error.value is raised and list(tmp_path.iterdir()) == []
