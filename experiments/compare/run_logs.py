"""Read finished or running training runs: config, final metrics, metric curves and sample images.

A run is read from its run directory's CSV logs (`csv/attempt_<k>/metrics.csv`, later attempts continue
earlier ones) when it has them, else from its W&B run files (`wandb/offline-run-*/run-<id>.wandb`, decoded by
wandb-core's `leet inspect`), or from the W&B API for runs that only live on a W&B server.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import yaml

from dtl_foundation.run_layout import WANDB_ID_FILE, RunLayout, attempt_number
from experiments.compare.summary import final_metrics

CSV_GLOB = "csv/attempt_*/metrics.csv"
WANDB_GLOB = "wandb/*run-*/run-*.wandb"  # offline-run-<time>-<id>/ and, for online runs, run-<time>-<id>/
CONFIG_GLOBS = ("meta/attempt_*/config.yaml", ".hydra/config.yaml", "csv/attempt_*/hparams.yaml")
RUN_DIR_MARKERS = (CSV_GLOB, WANDB_GLOB, *CONFIG_GLOBS, WANDB_ID_FILE, "checkpoints")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
STEP_KEYS = ("trainer/global_step", "step", "_step")
NOT_METRICS = {"step", "epoch", "trainer/global_step"}


class RunLogError(ValueError):
    """A run, folder or W&B group that cannot be read, with the path and the reason."""


@dataclass
class Curve:
    """One metric over training steps (sorted, one value per step)."""

    steps: np.ndarray
    values: np.ndarray


@dataclass
class RunLog:
    """One training run as a comparison sees it."""

    name: str
    location: str
    source: str  # "csv", "wandb-offline" or "wandb-api"
    config: dict[str, Any]
    final: dict[str, float]
    curves: dict[str, Curve]
    images: list[Path] = field(default_factory=list)
    group: str | None = None

    @property
    def experiment(self) -> str:
        return str(self.config.get("experiment_name") or self.group or Path(self.location).parent.name)

    @property
    def seed(self) -> Any:
        return self.config.get("seed")


def _attempt_order(path: Path) -> tuple[str, float]:
    """W&B run folders are named <kind>-<YYYYMMDD_HHMMSS>-<id>: order attempts by that time, then by mtime."""
    match = re.search(r"run-(\d{8}_\d{6})-", path.parent.name)
    return (match.group(1) if match else "", path.stat().st_mtime)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def wandb_files(run_dir: Path) -> list[Path]:
    """The run's W&B transaction logs, oldest attempt first."""
    return sorted(run_dir.glob(WANDB_GLOB), key=_attempt_order)


def is_run_dir(path: Path) -> bool:
    """A dtl run directory: it holds logs, a saved config, a W&B id or checkpoints."""
    return path.is_dir() and any(any(path.glob(marker)) for marker in RUN_DIR_MARKERS)


def find_run_dirs(folder: Path) -> list[Path]:
    """Every run directory at or under `folder` (a run directory's own subfolders are not searched)."""
    found = []
    for root, dirs, _ in os.walk(folder):
        path = Path(root)
        if is_run_dir(path):
            found.append(path)
            dirs.clear()
        else:
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    return sorted(found)


def read_config(run_dir: Path) -> dict[str, Any]:
    """The composed config of the run's latest launch ({} when the run saved none)."""
    for pattern in CONFIG_GLOBS:
        paths = sorted(run_dir.glob(pattern), key=attempt_number)
        if not paths:
            continue
        try:
            config = yaml.safe_load(paths[-1].read_text())
        except yaml.YAMLError as e:
            raise RunLogError(f"{paths[-1]}: not valid YAML ({e})") from e
        if not isinstance(config, dict):
            raise RunLogError(f"{paths[-1]}: expected a mapping, found {type(config).__name__}")
        return config
    return {}


def _curves_from_points(points: dict[str, dict[int, float]]) -> dict[str, Curve]:
    curves = {}
    for name, by_step in points.items():
        steps = np.array(sorted(by_step), dtype=np.int64)
        curves[name] = Curve(steps=steps, values=np.array([by_step[s] for s in steps], dtype=np.float64))
    return curves


def read_csv_curves(run_dir: Path) -> dict[str, Curve]:
    """Every metric over steps from all CSV attempts; a resumed attempt's value replaces an earlier one's."""
    points: dict[str, dict[int, float]] = {}
    for path in RunLayout(run_dir).csv_logs():
        with open(path, newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                try:
                    step = int(float(row["step"]))
                    values = {k: float(v) for k, v in row.items() if k not in NOT_METRICS and v not in ("", None)}
                except (KeyError, TypeError, ValueError) as e:
                    raise RunLogError(f"{path}:{line}: unreadable metrics row ({e})") from e
                for name, value in values.items():
                    points.setdefault(name, {})[step] = value
    return _curves_from_points(points)


def _wandb_core() -> str:
    try:
        from wandb.util import get_core_path

        return get_core_path()
    except Exception as e:  # wandb raises its own error types when the wandb-core binary is missing
        raise RunLogError(f"reading W&B run files needs the wandb-core binary of the wandb package: {e}") from e


def inspect_wandb_file(path: Path, summary: bool = False) -> Any:
    """wandb-core's decoding of a .wandb transaction log: its records, or with `summary` the run's final state."""
    args = [_wandb_core(), "leet", "inspect", "--json", "--no-observability", "--run-file", str(path),
            str(path.parent.parent)]
    if summary:
        args.insert(3, "--summary")
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RunLogError(f"{path}: not a readable W&B run file ({done.stderr.strip() or done.stdout.strip()})")
    try:
        if summary:
            return json.loads(done.stdout)
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise RunLogError(f"{path}: wandb-core printed no JSON ({e})") from e


def wandb_run_record(path: Path) -> dict[str, Any]:
    """The run record of a .wandb file (id, group, name), read without decoding the rest of the file."""
    args = [_wandb_core(), "leet", "inspect", "--json", "--no-observability", "--run-file", str(path),
            str(path.parent.parent)]
    with subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                record = json.loads(line) if line.strip() else {}
            except json.JSONDecodeError as e:
                proc.kill()
                raise RunLogError(f"{path}: wandb-core printed no JSON ({e})") from e
            if record.get("type") == "run":
                proc.kill()  # the run record comes first; the history after it is not needed here
                return record["run"]
        error = proc.stderr.read() if proc.stderr else ""
    raise RunLogError(f"{path}: not a readable W&B run file ({error.strip() or 'it holds no run record'})")


def _numbers(mapping: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in mapping.items() if is_number(v) and not k.startswith("_") and k not in NOT_METRICS}


def _unwrapped_summaries(summary: dict[str, Any]) -> dict[str, Any]:
    """A define_metric(summary="max"/"min") entry is stored as {"max": value}: its value is the run's final number."""
    return {k: next(iter(v.values())) if isinstance(v, dict) and len(v) == 1 and set(v) <= {"max", "min", "last"}
            else v for k, v in summary.items()}


def _history_step(item: dict[str, Any], fallback: int) -> int:
    return int(next((item[k] for k in STEP_KEYS if is_number(item.get(k))), fallback))


def _strip_wandb_keys(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def read_wandb_files(files: list[Path], location: str) -> RunLog:
    """One W&B run from its transaction logs (one per attempt, oldest first): history, summary, config, group."""
    if not files:
        raise RunLogError(f"{location}: no W&B run files (wandb/*run-*/run-*.wandb)")
    points: dict[str, dict[int, float]] = {}
    final: dict[str, float] = {}
    config: dict[str, Any] = {}
    group = name = None
    for path in files:
        for record in inspect_wandb_file(path):
            if record.get("type") == "run":
                group = record["run"].get("run_group") or group
                name = record["run"].get("display_name") or name
            elif record.get("type") == "history":
                item = record["history"].get("item", {})
                step = _history_step(item, int(record["history"].get("step", {}).get("num", 0)))
                for key, value in _numbers(item).items():
                    points.setdefault(key, {})[step] = value
        state = inspect_wandb_file(path, summary=True)
        final.update(_numbers(_unwrapped_summaries(state.get("summary") or {})))
        config = _strip_wandb_keys(state.get("config") or {}) or config
    return RunLog(name=name or Path(location).name, location=location, source="wandb-offline", config=config,
                  final=final, curves=_curves_from_points(points), group=group)


def sample_images(run_dir: Path) -> list[Path]:
    """Images a run saved (figures/, samples/, else W&B media), newest last."""
    for pattern in ("figures/**/*", "samples/**/*", "wandb/*run-*/files/media/images/**/*"):
        images = [p for p in run_dir.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        if images:
            return sorted(images, key=lambda p: (p.stat().st_mtime, p.name))
    return []


def read_run(run_dir: Path) -> RunLog:
    """A run directory, from its CSV logs, else from its W&B run files."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunLogError(f"{run_dir}: no such run directory")
    if any(run_dir.glob(CSV_GLOB)):
        curves = read_csv_curves(run_dir)  # first: it names the file and line of a bad row
        try:
            final = final_metrics(run_dir)
        except (KeyError, ValueError) as e:
            raise RunLogError(f"{run_dir}: unreadable CSV metrics ({e})") from e
        run = RunLog(name=run_dir.name, location=str(run_dir), source="csv", config=read_config(run_dir),
                     final=final, curves=curves)
    elif wandb_files(run_dir):
        run = read_wandb_files(wandb_files(run_dir), str(run_dir))
        run.name = run_dir.name
        run.config = read_config(run_dir) or run.config
    else:
        raise RunLogError(f"{run_dir}: a run directory with no logs (neither {CSV_GLOB} nor {WANDB_GLOB}); "
                          "the run may have failed before its first logged step")
    run.images = sample_images(run_dir)
    return run


def _run_dir_of(wandb_file: Path) -> Path | None:
    """<run_dir>/wandb/<kind>-run-<time>-<id>/run-<id>.wandb -> <run_dir>, when that is a dtl run directory."""
    candidate = wandb_file.parents[2] if len(wandb_file.parents) > 2 else None
    return candidate if candidate is not None and wandb_file.parents[1].name == "wandb" else None


def wandb_group_runs(wandb_dir: Path, group: str) -> list[RunLog]:
    """Every W&B run of `group` whose run files lie under `wandb_dir` (offline or synced-from-local)."""
    if not wandb_dir.is_dir():
        raise RunLogError(f"--wandb-dir {wandb_dir}: no such directory")
    files = sorted((p for p in wandb_dir.rglob("run-*.wandb") if not p.parent.is_symlink()),  # not wandb/latest-run
                   key=_attempt_order)
    if not files:
        raise RunLogError(f"--wandb-dir {wandb_dir}: no W&B run files (run-*.wandb) under it")
    by_run: dict[str, list[Path]] = {}
    groups_seen: set[str] = set()
    for path in files:
        run_record = wandb_run_record(path)
        groups_seen.add(str(run_record.get("run_group") or ""))
        if run_record.get("run_group") == group:
            by_run.setdefault(str(run_record.get("run_id") or path.stem), []).append(path)
    if not by_run:
        raise RunLogError(f"W&B group {group!r}: no run under {wandb_dir} belongs to it "
                          f"(groups there: {', '.join(sorted(g for g in groups_seen if g)) or 'none'})")
    runs = []
    for run_files in by_run.values():
        run_dir = _run_dir_of(run_files[0])
        if run_dir is not None and any(run_dir.glob(CSV_GLOB)):
            run = read_run(run_dir)
            run.group = group
        else:
            location = str(run_dir or run_files[0].parent)
            run = read_wandb_files(run_files, location)
            if run_dir is not None:
                run.images = sample_images(run_dir)
        runs.append(run)
    return sorted(runs, key=lambda r: r.location)


def wandb_api_group_runs(project: str, group: str) -> list[RunLog]:
    """Every run of `group` in the W&B project `[entity/]project` through the W&B public API (needs network)."""
    import wandb

    try:
        api = wandb.Api(timeout=60)
        remote_runs = list(api.runs(project, filters={"group": group}))
    except Exception as e:  # the API raises wandb, requests and value errors alike for a bad path or no network
        raise RunLogError(f"W&B group {group!r} in project {project!r}: the W&B API could not be queried ({e}); "
                          "for offline runs pass --wandb-dir") from e
    if not remote_runs:
        raise RunLogError(f"W&B group {group!r}: project {project!r} has no runs in it")
    runs = []
    for remote in remote_runs:
        points: dict[str, dict[int, float]] = {}
        for index, row in enumerate(remote.scan_history()):
            step = _history_step(row, index)
            for key, value in _numbers(row).items():
                points.setdefault(key, {})[step] = value
        runs.append(RunLog(name=remote.name or remote.id, location=remote.url, source="wandb-api",
                           config=_strip_wandb_keys(dict(remote.config)), final=_numbers(dict(remote.summary_metrics)),
                           curves=_curves_from_points(points), group=group))
    return runs


def available_metrics(runs: Iterable[RunLog]) -> list[str]:
    """Every final metric any of the runs logged."""
    return sorted({name for run in runs for name in run.final})
