"""Pipeline files: sweeps chained into stages, a later stage's runs reading an earlier stage's runs.

A pipeline file has `name`, `stages` and optionally `compare`:

    stages:
      judge:  {sweep: {method: grid, parameters: {experiment: {value: emotion_classifier_demo}}}}
      models:
        sweep: configs/sweep/ablation.yaml            # a sweep file, or a sweep written inline
        inputs:                                       # a Hydra key of every run <- a run of an earlier stage
          model.emotion_classifier: {stage: judge, path: checkpoints/best.ckpt}
      lip_refiner:
        sweep: {method: grid, parameters: {experiment: {value: lip_refiner_demo}, seed: {values: [1, 2, 3]}}}
        inputs:                                       # the EmoDiff run of the same seed
          model.emodiff_run: {stage: models, match: [seed], where: {experiment: emodiff_demo}}
    compare: {stages: [models, lip_refiner], baseline: emodiff_demo, goals: {test/diversity: max}}

Each stage is a grid sweep, `<pipeline id>-<stage>` (its runs `<pipeline id>-<stage>-<k>`, states and logs as
`dtl sweep` keeps them). An input names the one run of its stage whose parameters equal this run's on `match`
and the values in `where`; the run reads that run's directory (or `path` inside it), known before anything trains.
Here the stages train in order; with --slurm each group of runs with the same unfinished inputs is one job array
held by `--dependency=afterok` on exactly those runs' array tasks. A finished run is never trained again, so the
same command resumes a pipeline and, once everything is done, only writes the comparison (once).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dtl_foundation.atomic_files import atomic_write_text
from experiments.sweep.command import (Sweep, busy_elsewhere, check_fixed_overrides, describe, run_local,
                                      submit_array)
from experiments.sweep.engine import SweepFileError, grid_points, load_sweep, sweep_spec
from experiments.sweep.store import PlannedRun

STAGE_KEYS = {"sweep", "inputs"}
INPUT_KEYS = {"stage", "match", "where", "path"}


def is_pipeline_file(path: Path) -> bool:
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(config, dict) and "stages" in config


@dataclass(frozen=True)
class Input:
    key: str
    stage: str
    match: tuple[str, ...] = ()
    where: tuple[tuple[str, Any], ...] = ()
    path: str | None = None


@dataclass
class Stage:
    name: str
    config: dict
    inputs: list[Input]
    sweep: Sweep | None = None
    runs: list[PlannedRun] = field(default_factory=list)


@dataclass
class Pipeline:
    path: Path
    name: str
    stages: list[Stage]
    compare: dict

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)


def _sweep_config(value: Any, file: Path, where: str) -> dict:
    if isinstance(value, str):
        sweep_file = Path(value)
        if not sweep_file.is_file():
            raise SweepFileError(f"{file}: {where}: no such sweep file {value!r}")
        return load_sweep(sweep_file).config
    return sweep_spec(value, Path(f"{file}: {where}")).config


def load_pipeline(path: Path) -> Pipeline:
    """Read and check a pipeline file; SweepFileError names the file and the key at fault."""
    config = yaml.safe_load(path.read_text())
    stages_config = config.get("stages")
    if not isinstance(stages_config, dict) or not stages_config:
        raise SweepFileError(f"{path}: stages: a mapping of stage name to {{sweep: ..., inputs: ...}}")
    stages: list[Stage] = []
    for name, body in stages_config.items():
        where = f"stages.{name}"
        if not isinstance(body, dict) or "sweep" not in body or set(body) - STAGE_KEYS:
            raise SweepFileError(f"{path}: {where}: expected {{sweep: FILE or sweep, inputs: {{...}}}}, got {body!r}")
        sweep = _sweep_config(body["sweep"], path, f"{where}.sweep")
        if sweep["method"] != "grid":
            raise SweepFileError(f"{path}: {where}.sweep: a pipeline stage is a grid (its runs known upfront)")
        inputs = []
        for key, spec in (body.get("inputs") or {}).items():
            if not isinstance(spec, dict) or "stage" not in spec or set(spec) - INPUT_KEYS:
                raise SweepFileError(f"{path}: {where}.inputs.{key}: expected {{stage, match, where, path}}")
            if spec["stage"] not in [s.name for s in stages]:
                raise SweepFileError(f"{path}: {where}.inputs.{key}: stage {spec['stage']!r} is not an earlier "
                                     f"stage (earlier: {', '.join(s.name for s in stages) or 'none'})")
            if key in sweep["parameters"]:
                raise SweepFileError(f"{path}: {where}.inputs.{key}: the stage's sweep sets it already")
            inputs.append(Input(key, spec["stage"], tuple(spec.get("match") or ()),
                                tuple(sorted((spec.get("where") or {}).items())), spec.get("path")))
        stages.append(Stage(name, sweep, inputs))
    compare = config.get("compare") or {}
    unknown = set(compare.get("stages") or []) - set(stages_config)
    if unknown:
        raise SweepFileError(f"{path}: compare.stages: no stage {sorted(unknown)}")
    return Pipeline(path, str(config.get("name") or path.stem), stages, compare)


def pipeline_id(pipeline: Pipeline, fixed: list[str]) -> str:
    text = json.dumps({"stages": {s.name: [s.config, [i.__dict__ for i in s.inputs]] for s in pipeline.stages},
                       "overrides": fixed}, sort_keys=True, default=str)
    return f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', pipeline.name)}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def upstream(pipeline: Pipeline, spec: Input, params: dict[str, Any], where: str) -> PlannedRun:
    """The one run of `spec.stage` this point reads."""
    candidates = [r for r in pipeline.stage(spec.stage).runs
                  if all(r.params.get(k) == params.get(k) for k in spec.match)
                  and all(r.params.get(k) == v for k, v in spec.where)]
    if len(candidates) != 1:
        raise SweepFileError(f"{pipeline.path}: {where}.inputs.{spec.key}: {len(candidates)} runs of stage "
                             f"{spec.stage} match {describe_point(params, spec)} (one is needed)")
    return candidates[0]


def describe_point(params: dict[str, Any], spec: Input) -> str:
    wanted = {**{k: params.get(k) for k in spec.match}, **dict(spec.where)}
    return ", ".join(f"{k}={v}" for k, v in wanted.items()) or "(any)"


def input_value(run: PlannedRun, spec: Input) -> str:
    return str(Path(run.run_dir) / spec.path) if spec.path else run.run_dir


def plan(pipeline: Pipeline, fixed: list[str], root_id: str) -> None:
    """Each stage's sweep and its runs, every input resolved to an earlier stage's run directory."""
    for stage in pipeline.stages:
        spec = sweep_spec(stage.config, Path(f"{pipeline.path}: stages.{stage.name}.sweep"))
        check_fixed_overrides(spec, fixed)
        stage.sweep = Sweep(spec, fixed, f"{root_id}-{stage.name}", None)
        runs = []
        for index, params in enumerate(grid_points(spec)):
            read = {i.key: input_value(upstream(pipeline, i, params, f"stages.{stage.name}"), i)
                    for i in stage.inputs}
            runs.append(stage.sweep.plan(index, {**params, **read}))
        known = stage.sweep.runs
        if known and [r.params for r in known] != [r.params for r in runs[:len(known)]]:
            raise SweepFileError(f"{stage.sweep.store.root}: planned by another version of stage {stage.name}")
        stage.runs = runs


def stage_inputs(pipeline: Pipeline, stage: Stage, run: PlannedRun) -> list[tuple[Stage, PlannedRun]]:
    return [(pipeline.stage(i.stage), upstream(pipeline, i, run.params, f"stages.{stage.name}"))
            for i in stage.inputs]


def missing_inputs(pipeline: Pipeline, stage: Stage) -> list[str]:
    """What the stage's unfinished runs read and their finished inputs did not write (a file named by `path`)."""
    missing = []
    for run in stage.runs:
        if stage.sweep.store.state(run.run_id)["state"] == "done":
            continue
        for spec in stage.inputs:
            up = upstream(pipeline, spec, run.params, f"stages.{stage.name}")
            if not Path(input_value(up, spec)).exists():
                missing.append(f"{run.run_id} reads {input_value(up, spec)}, which run {up.run_id} of stage "
                               f"{spec.stage} did not write ({pipeline.path}: stages.{stage.name}.inputs.{spec.key})")
    return missing


def run_here(pipeline: Pipeline) -> int:
    """The stages one after another (each a local sweep, finished runs skipped); stops at a stage with failures."""
    for stage in pipeline.stages:
        print(f"== stage {stage.name}: {len(stage.runs)} runs ({stage.sweep.sweep_id})", flush=True)
        missing = missing_inputs(pipeline, stage)
        if missing:
            print("dtl sweep: " + "\n  ".join(missing), file=sys.stderr)
            return 1
        if run_local(stage.sweep) != 0:
            print(f"dtl sweep: stage {stage.name} has failed runs: the stages after it wait; fix and run the same "
                  "command again", file=sys.stderr)
            return 1
    return 0


def submit(pipeline: Pipeline, parallel: int | None) -> int:
    """Every unfinished run nobody is training, as job arrays held by `afterok` on the array tasks of their
    unfinished inputs (one array per stage and set of inputs)."""
    task_of: dict[str, str] = {}  # run id -> the Slurm array task that trains it
    submitted = 0
    for stage in pipeline.stages:
        store = stage.sweep.store
        groups: dict[tuple[str, ...], list[PlannedRun]] = {}
        for run in stage.runs:
            if store.state(run.run_id)["state"] == "done":
                continue
            busy = busy_elsewhere(store, run)
            if busy:
                task = store.submitted_task(run.index) or store.state(run.run_id).get("slurm_job")
                if task is None:  # a local process: nothing Slurm could wait for
                    print(f"dtl sweep: {run.run_id}: {busy}; submit when it is done", file=sys.stderr)
                    return 1
                task_of[run.run_id] = task
                continue
            waits = []
            for up_stage, up in stage_inputs(pipeline, stage, run):
                if up_stage.sweep.store.state(up.run_id)["state"] == "done":
                    continue
                if up.run_id not in task_of:
                    print(f"dtl sweep: {run.run_id} reads {up.run_id}, which failed and was not resubmitted",
                          file=sys.stderr)
                    return 1
                waits.append(task_of[up.run_id])
            groups.setdefault(tuple(sorted(set(waits))), []).append(run)
        for waits, runs in groups.items():
            job = submit_array(stage.sweep, runs, parallel, "afterok:" + ":".join(waits) if waits else None)
            task_of.update({r.run_id: f"{job}_{r.index}" for r in runs})
            submitted += len(runs)
    if not submitted:
        print("nothing to submit")
    return 0


def compare_runs(pipeline: Pipeline, pipeline_dir: Path) -> int:
    """`dtl compare` over the compared stages' runs into <pipeline dir>/report, once per set of finished runs."""
    from experiments.compare.command import main as compare

    names = pipeline.compare.get("stages") or [s.name for s in pipeline.stages]
    runs = [(s, r) for s in pipeline.stages if s.name in names for r in s.runs]
    states = {r.run_id: s.sweep.store.state(r.run_id) for s, r in runs}
    unfinished = [run_id for run_id, st in states.items() if st["state"] != "done"]
    if unfinished:
        print(f"comparison waits for {len(unfinished)} runs ({', '.join(unfinished[:4])}"
              f"{', ...' if len(unfinished) > 4 else ''}): run the same command again when they are done")
        return 0
    stamp = {run_id: st.get("updated") for run_id, st in states.items()}
    record = pipeline_dir / "compared.json"
    report = pipeline_dir / "report"
    if record.is_file() and json.loads(record.read_text()) == stamp and (report / "report.md").is_file():
        print(f"comparison up to date: {report / 'report.md'}")
        return 0
    ignore = sorted({i.key for s, _ in runs for i in s.inputs})  # which run a run read is lineage, not a variant
    args = [*(r.run_dir for _, r in runs), "--out", str(report), *[a for key in ignore for a in ("--ignore", key)]]
    if pipeline.compare.get("baseline"):
        args += ["--baseline", str(pipeline.compare["baseline"])]
    for metric in pipeline.compare.get("metrics") or []:
        args += ["--metric", metric]
    for metric, goal in (pipeline.compare.get("goals") or {}).items():
        args += ["--goal", f"{metric}={goal}"]
    print(f"$ dtl compare {shlex.join(args)}", flush=True)
    code = compare(args)
    if code == 0:
        atomic_write_text(record, json.dumps(stamp, indent=1) + "\n")
    return code


def run_pipeline(path: Path, fixed: list[str], sweep_id: str | None, slurm: bool, parallel: int | None,
                 dry_run: bool) -> int:
    pipeline = load_pipeline(path)
    root_id = sweep_id or pipeline_id(pipeline, fixed)
    plan(pipeline, fixed, root_id)
    pipeline_dir = pipeline.stages[0].sweep.output_root / "sweeps" / root_id
    if dry_run:
        for stage in pipeline.stages:
            print(f"== stage {stage.name} ({stage.sweep.sweep_id})")
            for run in stage.runs:
                state = stage.sweep.store.state(run.run_id)["state"] if stage.sweep.store.exists() else "new"
                print(f"[{state}] {run.run_id}: {describe(run)}")
        return 0
    with contextlib.ExitStack() as held:  # every stage's sweep, for one `dtl sweep` at a time
        for stage in pipeline.stages:
            held.enter_context(stage.sweep.store.lock())
            stage.sweep.open()
            stage.sweep.add(stage.runs[len(stage.sweep.runs):])
        if slurm:
            code = submit(pipeline, parallel)
            return code or compare_runs(pipeline, pipeline_dir)
        return run_here(pipeline) or compare_runs(pipeline, pipeline_dir)
