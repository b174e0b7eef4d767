"""One process at a time in a directory (a training run, an evaluation's outputs, a sweep).

Two files in the directory: `dtl.lock`, held with the kernel's lock (filelock: flock, released by the kernel when
the holder dies, carried across hosts by NFSv4 and the cluster file systems mounted with locking), and
`dtl.lock.json`, the holder's record (host, PID, Slurm job, start time, command) whose modification time the
holder refreshes every HEARTBEAT_S seconds.

A process that gets the kernel lock but finds a record left behind takes the directory over only when that holder
is gone: the same Slurm job (a requeue of it, which Slurm never runs twice at once), or on this host a PID that no
longer runs (or runs another program since), or on another host a heartbeat older than STALE_AFTER_S (a file
system whose locks do not reach across hosts would otherwise let two hosts in at once).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from dtl_foundation.atomic_files import atomic_write_text
from dtl_foundation.slurm import slurm_job_id

log = logging.getLogger(__name__)
LOCK_FILE = "dtl.lock"
HOLDER_FILE = "dtl.lock.json"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0


class DirectoryHeld(RuntimeError):
    """Another process holds the directory; the message names it."""


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22): a reused PID differs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def pid_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    pid_start: str | None
    slurm_job: str | None
    started: str
    command: str

    @classmethod
    def this_process(cls) -> Holder:
        return cls(host=socket.gethostname(), pid=os.getpid(), pid_start=process_start(os.getpid()),
                   slurm_job=slurm_job_id(), started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   command=" ".join(sys.argv))

    def describe(self) -> str:
        job = f", Slurm job {self.slurm_job}" if self.slurm_job else ""
        return f"pid {self.pid} on {self.host}{job}, since {self.started} ({self.command})"


def read_holder(directory: Path) -> tuple[Holder, float] | None:
    """The recorded holder and the age of its heartbeat in seconds; None when there is no readable record."""
    path = directory / HOLDER_FILE
    try:
        record = json.loads(path.read_text())
        age = time.time() - path.stat().st_mtime
        return Holder(**record), age
    except (OSError, ValueError, TypeError):  # none, or not one of ours: nothing to respect
        return None


def why_gone(holder: Holder, heartbeat_age: float, stale_after: float = STALE_AFTER_S) -> str | None:
    """Why a recorded holder no longer holds the directory, or None while it may still be working in it."""
    me = Holder.this_process()
    if holder.slurm_job and holder.slurm_job == me.slurm_job:
        return f"the same Slurm job {holder.slurm_job}, requeued"
    if holder.host == me.host:
        if holder.pid == me.pid:  # a container restarted with the same PIDs
            return f"pid {holder.pid} is this process now"
        if not pid_runs(holder.pid):
            return f"pid {holder.pid} no longer runs on {holder.host}"
        if holder.pid_start and process_start(holder.pid) not in (None, holder.pid_start):
            return f"pid {holder.pid} on {holder.host} is another process now"
        return None
    if heartbeat_age > stale_after:
        return f"no heartbeat from {holder.host} for {heartbeat_age:.0f} s (> {stale_after:.0f} s)"
    return None


def _heartbeat(path: Path, stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        with contextlib.suppress(OSError):
            os.utime(path)


@contextlib.contextmanager
def hold_directory(directory: str | os.PathLike, what: str = "directory",
                   heartbeat_s: float = HEARTBEAT_S) -> Iterator[Holder]:
    """Hold `directory` for this process until the block ends; DirectoryHeld, naming the holder, when another
    process holds it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lock = FileLock(directory / LOCK_FILE, timeout=0, is_singleton=False, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        found = read_holder(directory)
        holder = found[0].describe() if found else "a process that has not written its record yet"
        raise DirectoryHeld(f"{directory}: this {what} is in use by {holder}; wait for it to finish, or stop it "
                            f"(the lock: {directory / LOCK_FILE})") from None
    try:
        found = read_holder(directory)
        if found:
            reason = why_gone(*found)
            if reason is None:
                raise DirectoryHeld(
                    f"{directory}: this {what} is in use by {found[0].describe()}, heartbeat {found[1]:.0f} s ago "
                    f"(its lock did not stop this process: a file system without locks across hosts?); it is "
                    f"taken over after {STALE_AFTER_S:.0f} s without a heartbeat")
            log.warning("%s: taking over this %s from %s: %s", directory, what, found[0].describe(), reason)
    except BaseException:
        lock.release()
        raise
    me = Holder.this_process()
    record = directory / HOLDER_FILE
    atomic_write_text(record, json.dumps(asdict(me), indent=1) + "\n")
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(record, stop, heartbeat_s), daemon=True,
                            name=f"heartbeat {record}")
    beat.start()
    try:
        yield me
    finally:
        stop.set()
        beat.join()
        with contextlib.suppress(FileNotFoundError):
            record.unlink()
        lock.release()
