"""Faults injected at named points, for the tests that show a kill, a full disk or a bad batch loses nothing.

    DTL_FAULT="<point>:<action>[:<where>]"

Points: `mid_write` (an atomic write with half its bytes in the temporary file), `before_rename` (the temporary
complete and synced, not yet renamed onto the destination), `after_step` (a training step done; `where` is the
global step). For the write points `where` is a glob on the destination's file name (any file when absent),
optionally followed by `#<n>`: the n-th matching write (the first when absent). A fault fires once in a process;
the tests run the command again without it.

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

    @classmethod
    def parse(cls, text: str) -> Fault:
        point, _, rest = text.partition(":")
        action, _, where = rest.partition(":")
        if point not in POINTS or action not in ACTIONS or (action == "nan" and point != "after_step"):
            raise ValueError(f"{FAULT_ENV}={text!r}: expected <point>:<action>[:<where>] with a point of {POINTS} "
                             f"and an action of {ACTIONS} (nan only after_step)")
        if point == "after_step" and not where.isdigit():
            raise ValueError(f"{FAULT_ENV}={text!r}: after_step needs the step, e.g. after_step:kill:30")
        return cls(point, action, where or None)


def armed(point: str) -> Fault | None:
    """The fault set for `point` in the environment (none unless DTL_FAULT names it)."""
    text = os.environ.get(FAULT_ENV)
    if not text or text in _fired:
        return None
    fault = Fault.parse(text)
    return fault if fault.point == point else None


def act(fault: Fault, what: str) -> None:
    _fired.add(os.environ[FAULT_ENV])
    if fault.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault.action == "stop":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif fault.action == "enospc":
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected by {FAULT_ENV})", what)


def at_write(point: str, destination: Path, temporary: Path) -> None:
    """A write point: at `mid_write` the temporary is first cut to half its bytes, as a kill mid-write leaves it."""
    fault = armed(point)
    if fault is None:
        return
    pattern, _, nth = (fault.where or "*").partition("#")
    if not fnmatch.fnmatch(destination.name, pattern):
        return
    _matches[pattern] = _matches.get(pattern, 0) + 1
    if _matches[pattern] < int(nth or 1):
        return
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
    fault = armed("after_step")
    if fault is None or int(fault.where) != step:
        return None
    if fault.action == "nan":
        _fired.add(os.environ[FAULT_ENV])
        return fault
    act(fault, f"step {step}")
    return None
