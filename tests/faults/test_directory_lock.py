"""One process at a time in a directory: the holder is named, a dead or stale holder is taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, replace

import pytest

from dtl_foundation import directory_lock as dl
from dtl_foundation.directory_lock import DirectoryHeld, Holder, hold_directory

HOLD = """
import sys, time
from dtl_foundation.directory_lock import hold_directory
with hold_directory(sys.argv[1], what="test directory"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def holder_process(directory, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory), str(seconds)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_with_the_holders_name_then_gets_it_after(tmp_path):
    first = holder_process(tmp_path, 60)
    try:
        started = time.monotonic()
        with pytest.raises(DirectoryHeld, match=rf"in use by pid {first.pid} on .*since .*-c"):
            with hold_directory(tmp_path):
                pass
        assert time.monotonic() - started < 0.5  # at once, no waiting for the lock
    finally:
        first.kill()
        first.wait()
    # killed: the kernel dropped its lock, its record is left behind and taken over
    assert json.loads((tmp_path / dl.HOLDER_FILE).read_text())["pid"] == first.pid
    with hold_directory(tmp_path) as me:
        assert me.pid == os.getpid()
        assert json.loads((tmp_path / dl.HOLDER_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / dl.HOLDER_FILE).exists()  # released: no record left


def test_a_second_hold_in_the_same_process_is_refused_too(tmp_path):
    """`dtl sweep` holds its sweep while it runs; nothing in the same process may take the directory again."""
    with hold_directory(tmp_path):
        with pytest.raises(DirectoryHeld, match=rf"in use by pid {os.getpid()} "):
            with hold_directory(tmp_path):
                pass


def test_a_record_alone_still_refuses_while_its_holder_lives(tmp_path):
    """A file system whose locks do not reach the other process: the record and the heartbeat still decide."""
    first = holder_process(tmp_path / "elsewhere", 60)
    try:
        record = json.loads((tmp_path / "elsewhere" / dl.HOLDER_FILE).read_text())
        (tmp_path / dl.HOLDER_FILE).write_text(json.dumps(record))  # no kernel lock on tmp_path itself
        with pytest.raises(DirectoryHeld, match=rf"pid {first.pid} .*heartbeat"):
            with hold_directory(tmp_path):
                pass
    finally:
        first.kill()
        first.wait()
    with hold_directory(tmp_path):  # the PID is gone now
        pass


def test_takeover_rules_for_other_hosts_requeues_and_reused_pids(tmp_path, monkeypatch):
    me = Holder.this_process()
    other_host = replace(me, host=me.host + "-other", pid=1)
    assert dl.why_gone(other_host, heartbeat_age=10) is None
    assert dl.why_gone(replace(other_host, host=""), heartbeat_age=10) is None  # a name sorting before this one
    assert "no heartbeat from" in dl.why_gone(other_host, heartbeat_age=dl.STALE_AFTER_S + 1)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert "same Slurm job 4242" in dl.why_gone(replace(other_host, slurm_job="4242"), heartbeat_age=1)
    assert ", Slurm job 4242, " in replace(other_host, slurm_job="4242").describe()
    assert "Slurm" not in other_host.describe()
    for job in ("4241", "4243"):
        assert dl.why_gone(replace(other_host, slurm_job=job), heartbeat_age=1) is None
    monkeypatch.delenv("SLURM_JOB_ID")
    same_pid = json.loads(json.dumps(asdict(me)))["pid"]  # as read back from a record: equal, not the same object
    assert "is this process now" in dl.why_gone(replace(me, pid=same_pid), heartbeat_age=1)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])  # on this host
    try:
        time.sleep(0.1)
        started = dl.process_start(alive.pid)
        assert dl.why_gone(replace(me, pid=alive.pid, pid_start=started), heartbeat_age=1) is None
        assert "another process now" in dl.why_gone(replace(me, pid=alive.pid, pid_start="1"), heartbeat_age=1)
    finally:
        alive.kill()
        alive.wait()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert "no longer runs" in dl.why_gone(replace(me, pid=dead.pid), heartbeat_age=1)

    # a stale record from another host is taken over; a fresh one is not
    (tmp_path / dl.HOLDER_FILE).write_text(json.dumps(asdict(other_host)))
    with pytest.raises(DirectoryHeld, match=r"-other"):
        with hold_directory(tmp_path):
            pass
    old = time.time() - dl.STALE_AFTER_S - 60
    os.utime(tmp_path / dl.HOLDER_FILE, (old, old))
    assert dl.read_holder(tmp_path)[1] == pytest.approx(dl.STALE_AFTER_S + 60, abs=5)
    with hold_directory(tmp_path / "new" / "nested"):  # created, parents too
        pass
    with hold_directory(tmp_path):
        pass


def test_the_holder_refreshes_its_heartbeat(tmp_path):
    with hold_directory(tmp_path, heartbeat_s=0.05):
        record = tmp_path / dl.HOLDER_FILE
        old = time.time() - 1000
        os.utime(record, (old, old))
        time.sleep(0.3)
        assert time.time() - record.stat().st_mtime < 5


def test_process_start_is_the_start_time_in_clock_ticks_since_boot(tmp_path):
    """A process started now started `uptime` seconds after boot: field 22 of /proc/<pid>/stat, not a neighbour,
    also when the program's name has a parenthesis in it."""
    odd = tmp_path / "python) (x"
    odd.symlink_to(sys.executable)
    child = subprocess.Popen([str(odd), "-c", "import time; time.sleep(30)"])
    time.sleep(0.2)
    try:
        uptime = float(open("/proc/uptime").read().split()[0])
        started = int(dl.process_start(child.pid)) / os.sysconf("SC_CLK_TCK")
        assert abs(uptime - started) < 5
    finally:
        child.kill()
        child.wait()
    assert dl.process_start(child.pid) is None  # gone


def test_asking_whether_a_process_runs_sends_it_nothing():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.2)
        assert dl.pid_runs(child.pid)
        time.sleep(0.2)
        assert child.poll() is None  # signal 0 probes; any other would have ended it
    finally:
        child.kill()
        child.wait()


def test_another_users_process_counts_as_running(monkeypatch):
    """os.kill(pid, 0) on another user's process raises PermissionError: it runs (root, as here, never sees it)."""
    def refuse(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(dl.os, "kill", refuse)
    assert dl.pid_runs(12345)
