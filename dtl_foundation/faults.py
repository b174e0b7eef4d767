"""Faults injected at named points, for the tests that show a kill, a full disk or a bad batch loses nothing.

    DTL_FAULT="<point>:<action>[:<where>][,<point>:<action>[:<where>]...]"

Points: `mid_write` (an atomic write with half its bytes in the temporary file), `before_rename` (the temporary
complete and synced, not yet renamed onto the destination), `after_step` (a training step done; `where` is the
global step). For the write points `where` is a glob on the destination's file name (any file when absent),
optionally followed by `#<n>`: the n-th matching write (the first when absent). Each fault of the list fires at
most once in a process; a resumed or requeued run (a new process) meets again only the points it reaches again.

Actions: `kill` (SIGKILL, as a preemption or an out-of-memory kill), `stop` (SIGSTOP: frozen until SIGCONT),
`enospc` (OSError "No space left on device", as a full disk), `nan` (after_step only: the next batch's floating
point inputs become NaN).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import signal
from dataclasses import dataclass
from pathlib import Path

FAULT_ENV = "DTL_FAULT"
POINTS = ("mid_write", "before_rename", "after_step")
ACTIONS = ("kill", "stop", "enospc", "nan")
_fired: set[str] = set()
_matches: dict[str, int] = {}


@dataclass(frozen=True)
class Fault:
    point: str
    action: str
    where: str | None
    text: str

    @classmethod
    def parse(cls, text: str) -> Fault:
        point, _, rest = text.partition(":")
        action, _, where = rest.partition(":")
        if point not in POINTS or action not in ACTIONS or (action == "nan" and point != "after_step"):
            raise ValueError(f"{FAULT_ENV}={text!r}: expected <point>:<action>[:<where>] with a point of {POINTS} "
                             f"and an action of {ACTIONS} (nan only after_step)")
        if point == "after_step" and not where.isdigit():
            raise ValueError(f"{FAULT_ENV}={text!r}: after_step needs the step, e.g. after_step:kill:30")
        return cls(point, action, where or None, text)


def armed(point: str) -> list[Fault]:
    """The faults for `point` in the environment not fired yet in this process (none unless DTL_FAULT names one)."""
    text = os.environ.get(FAULT_ENV)
    if not text:
        return []
    faults = [Fault.parse(part) for part in text.split(",")]
    return [f for f in faults if f.point == point and f.text not in _fired]


def act(fault: Fault, what: str) -> None:
    _fired.add(fault.text)
    if fault.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault.action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif fault.action == "enospc":
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected by {FAULT_ENV})", what)


def at_write(point: str, destination: Path, temporary: Path) -> None:
    """A write point: at `mid_write` the temporary is first cut to half its bytes, as a kill mid-write leaves it."""
    for fault in armed(point):
        pattern, _, nth = (fault.where or "*").partition("#")
        if not fnmatch.fnmatch(destination.name, pattern):
            continue
        _matches[fault.text] = _matches.get(fault.text, 0) + 1
        if _matches[fault.text] == int(nth or 1):
            _act_at_write(fault, point, destination, temporary)


def _act_at_write(fault: Fault, point: str, destination: Path, temporary: Path) -> None:
    if point != "mid_write":
        act(fault, str(destination))
        return
    written = temporary.read_bytes()
    os.truncate(temporary, len(written) // 2)
    try:
        act(fault, str(destination))
    finally:  # resumed after `stop`, or unwinding after `enospc`: the rest of the bytes follow, as a write would
        temporary.write_bytes(written)


def at_step(step: int) -> Fault | None:
    """The `after_step` fault of this step: acted on here, or returned for the caller to apply (`nan`)."""
    for fault in armed("after_step"):
        if int(fault.where) != step:
            continue
        if fault.action == "nan":
            _fired.add(fault.text)
            return fault
        act(fault, f"step {step}")
    return None
