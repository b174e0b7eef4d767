"""The sweep directory `outputs/sweeps/<sweep_id>/`: the sweep file, its points, and one state file per run.

    sweep.yaml          the validated sweep (W&B format, parameters flattened to Hydra keys)
    points.json         the sweep id, the fixed overrides, and every run: index k, run id <sweep_id>-<k>,
                        its parameters, its full `dtl train` overrides and its run directory
    runs/<run_id>.json  that run's state: pending | running | done | failed, with where it runs (pid or Slurm job)
    logs/<run_id>.log   the output of a run trained locally; slurm/ holds the array's scripts and logs

Every file is written atomically; Slurm array tasks each write only their own state file.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml

from dtl_foundation.atomic_files import atomic_write_text
from dtl_foundation.directory_lock import DirectoryHeld, hold_directory

STATES = ("pending", "running", "done", "failed")


class SweepStateError(RuntimeError):
    """The sweep directory disagrees with the command, or another `dtl sweep` is using it."""


@dataclass
class PlannedRun:
    """One point of the sweep as a `dtl train` run."""

    index: int
    run_id: str
    params: dict[str, Any]
    overrides: list[str]
    run_dir: str


class SweepStore:
    """Read and write one sweep directory."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()

    @property
    def points_file(self) -> Path:
        return self.root / "points.json"

    def exists(self) -> bool:
        return self.points_file.is_file()

    def create_or_check(self, sweep_id: str, config: dict, source: Path, fixed_overrides: list[str]) -> None:
        """Start the directory, or check that an existing one was made by the same sweep and overrides."""
        if self.exists():
            header = self._read_points()
            stored = yaml.safe_load((self.root / "sweep.yaml").read_text())
            if stored != yaml.safe_load(yaml.safe_dump(config)) or header["overrides"] != fixed_overrides:
                raise SweepStateError(
                    f"sweep {sweep_id} in {self.root} was started from a different sweep file or overrides "
                    f"(its sweep.yaml and points.json say what); pass another --sweep-id for a new sweep")
            return
        atomic_write_text(self.root / "sweep.yaml", yaml.safe_dump(config, sort_keys=False))
        self._write_points({"sweep_id": sweep_id, "source": str(source), "method": config["method"],
                            "metric": (config.get("metric") or {}).get("name"), "overrides": fixed_overrides,
                            "runs": []})

    def _read_points(self) -> dict:
        try:
            return json.loads(self.points_file.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SweepStateError(f"{self.points_file}: unreadable sweep points ({e})") from e

    def _write_points(self, data: dict) -> None:
        atomic_write_text(self.points_file, json.dumps(data, indent=1) + "\n")

    def header(self) -> dict:
        return {k: v for k, v in self._read_points().items() if k != "runs"}

    def runs(self) -> list[PlannedRun]:
        return [PlannedRun(**r) for r in self._read_points()["runs"]]

    def run(self, index: int) -> PlannedRun:
        runs = self.runs()
        if not 0 <= index < len(runs):
            raise SweepStateError(f"{self.points_file}: no run {index} (the sweep has {len(runs)})")
        return runs[index]

    def add_runs(self, new: list[PlannedRun]) -> None:
        """Append runs to the points file (their indices continue the existing ones)."""
        data = self._read_points()
        if [r.index for r in new] != list(range(len(data["runs"]), len(data["runs"]) + len(new))):
            raise ValueError(f"runs {[r.index for r in new]} do not continue the {len(data['runs'])} in {self.root}")
        data["runs"] += [asdict(r) for r in new]
        self._write_points(data)

    def state_file(self, run_id: str) -> Path:
        return self.root / "runs" / f"{run_id}.json"

    def state(self, run_id: str) -> dict[str, Any]:
        """The run's recorded state; `pending` when none was written yet."""
        path = self.state_file(run_id)
        if not path.is_file():
            return {"run_id": run_id, "state": "pending"}
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SweepStateError(f"{path}: unreadable run state ({e})") from e

    def set_state(self, run_id: str, state: str, **info: Any) -> dict[str, Any]:
        if state not in STATES:
            raise ValueError(f"unknown run state {state!r}; one of {STATES}")
        record = {"run_id": run_id, "state": state, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "host": socket.gethostname(), **info}
        atomic_write_text(self.state_file(run_id), json.dumps(record, indent=1) + "\n")
        return record

    def log_file(self, run_id: str) -> Path:
        return self.root / "logs" / f"{run_id}.log"

    @property
    def slurm_dir(self) -> Path:
        return self.root / "slurm"

    def _submissions(self) -> list[dict[str, Any]]:
        path = self.slurm_dir / "submissions.json"
        return json.loads(path.read_text()) if path.is_file() else []

    def record_submission(self, job: str, indices: list[int], script: Path) -> None:
        """Note a submitted job array; the array tasks themselves write their runs' states."""
        entries = self._submissions() + [{"job": job, "indices": indices, "script": str(script),
                                          "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z")}]
        atomic_write_text(self.slurm_dir / "submissions.json", json.dumps(entries, indent=1) + "\n")

    def submitted_task(self, index: int) -> str | None:
        """The Slurm array task (`<job>_<index>`) that last took this run, if any."""
        jobs = [s["job"] for s in self._submissions() if index in s["indices"]]
        return f"{jobs[-1]}_{index}" if jobs else None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the sweep for one `dtl sweep` at a time (a second one on the same sweep stops with a message)."""
        try:
            with hold_directory(self.root, what="sweep"):
                yield
        except DirectoryHeld as e:
            raise SweepStateError(f"another dtl sweep is running this sweep: {e}") from None
