"""`dtl sweep FILE`: run an ablation or hyperparameter sweep written in W&B's sweep format.

  dtl sweep configs/sweep/ablation.yaml [overrides]            every point, one after another, on this machine
  dtl sweep configs/sweep/ablation.yaml --slurm [overrides]    every point as one Slurm job array
  dtl sweep configs/sweep/emodiff_hparams.yaml --max-runs 20   random / bayes: up to 20 runs
  dtl sweep FILE --backend wandb --project P [--dry-run]       a sweep on a W&B server, its agents as a Slurm array

The points come from W&B's own engine (the `sweeps` package): grid gives every point, random and bayes up to
--max-runs (else the file's run_cap); bayes learns from the metric each finished run logged to its CSV files.
Run k is `dtl train <overrides> <point> run_id=<sweep_id>-<k>`, logged to W&B group <sweep_id> with the tag
sweep:<sweep_id> (offline unless configured; `wandb sync` uploads them later). outputs/sweeps/<sweep_id>/ keeps the
points and every run's state: the same command again resumes the sweep, skipping finished runs and retrying
failed ones. The default sweep id is the sweep's name (`name:` or the file name) plus a hash of the file and the
overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from experiments.compare.summary import final_metrics
from experiments.sweep.engine import (SweepFileError, SweepSpec, bayes_point, grid_points, history_run, load_sweep,
                                      random_points, space_size)
from experiments.launch.sbatch import device_overrides, render_sbatch, write_and_submit
from experiments.sweep.runs import SweepRunError, child_env, compose_run, override_key, plan_run
from experiments.sweep.store import PlannedRun, SweepStateError, SweepStore
from experiments.sweep.wandb_backend import run_wandb_backend

SWEEP_ID = re.compile(r"^[A-Za-z0-9][\w.-]*$")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dtl sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="a sweep YAML in W&B's format (configs/sweep/*.yaml)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. debug=fast")
    parser.add_argument("--backend", choices=("local", "wandb"), default="local",
                        help="local: this machine, or Slurm with --slurm; wandb: a W&B server's sweep and agents")
    parser.add_argument("--slurm", action="store_true", help="local backend: submit the runs as one Slurm job array")
    parser.add_argument("--max-runs", type=int, help="runs in the sweep (random/bayes; caps a grid)")
    parser.add_argument("--sweep-id", help="name of the sweep (default: <file name>-<hash of file and overrides>)")
    parser.add_argument("--batch", type=int, default=4,
                        help="bayes with --slurm: new points per submission (re-run the command for the next batch)")
    parser.add_argument("--parallel", type=int, help="Slurm: at most this many array tasks at once (--array=...%%N)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the runs (or the sbatch script, or the W&B sweep config) and change nothing")
    wandb = parser.add_argument_group("--backend wandb")
    wandb.add_argument("--project", help="W&B project (default: the logger config's, $WANDB_PROJECT or dreamtalk-lab)")
    wandb.add_argument("--entity", help="W&B entity (default: the logger config's, $WANDB_ENTITY or your default)")
    wandb.add_argument("--count-per-task", type=int, default=1, help="runs each array task's agent takes")
    wandb.add_argument("--array", type=int, help="array tasks (default: the runs the sweep needs / count per task)")
    ns = parser.parse_intermixed_args(argv)
    for name in ("max_runs", "batch", "parallel", "count_per_task", "array"):
        value = getattr(ns, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if ns.backend == "local" and (ns.project or ns.entity or ns.array or ns.count_per_task != 1):
        parser.error("--project, --entity, --array and --count-per-task belong to --backend wandb")
    if ns.backend == "wandb" and ns.sweep_id:
        parser.error("--sweep-id: on --backend wandb the W&B server names the sweep")
    if ns.sweep_id and not SWEEP_ID.match(ns.sweep_id):
        parser.error(f"--sweep-id {ns.sweep_id!r}: letters, digits, '_', '.', '-' (it names folders and run ids)")
    return ns


def check_fixed_overrides(spec: SweepSpec, fixed: list[str]) -> None:
    for override in fixed:
        if "=" not in override and not override.startswith("~"):
            raise SweepFileError(f"override {override!r}: expected key=value (or ~key to delete one)")
        key = override_key(override)
        if key == "run_id":
            raise SweepFileError(f"override {override!r}: the sweep names each run <sweep id>-<k>")
        if key in spec.parameters:
            raise SweepFileError(f"override {override!r} sets {key}, which {spec.path} sweeps over")


def target_runs(spec: SweepSpec, max_runs: int | None) -> int:
    """How many runs the sweep has: every grid point (at most --max-runs), else --max-runs or run_cap."""
    if spec.method == "grid":
        size = space_size(spec) or 1
        return min(size, max_runs) if max_runs else size
    count = max_runs or spec.run_cap
    if not count:
        raise SweepFileError(f"{spec.path}: method {spec.method} needs --max-runs N (or run_cap: N in the file)")
    return count


def read_metrics(run: PlannedRun) -> dict[str, float]:
    try:
        return final_metrics(Path(run.run_dir))
    except FileNotFoundError:
        return {}


def slurm_task_status(task: str) -> str | None:
    """Slurm's state of an array task while it is queued or running; None once it is gone."""
    try:
        out = subprocess.run(["squeue", "--noheader", "--array", "--jobs", task, "--format=%T"],
                             capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        print(f"dtl sweep: cannot ask Slurm about {task} (no squeue here); taking it as finished", file=sys.stderr)
        return None
    except subprocess.TimeoutExpired:
        return "of unknown state (squeue timed out)"  # rather skip it than train it twice
    states = out.stdout.split() if out.returncode == 0 else []
    return states[0].lower() if states else None


def busy_elsewhere(store: SweepStore, run: PlannedRun) -> str | None:
    """Where an unfinished run is still queued or training (a Slurm task, or a live local process), if anywhere."""
    state = store.state(run.run_id)
    if state["state"] in ("done", "failed"):
        return None
    task = state.get("slurm_job") or store.submitted_task(run.index)
    if task:
        status = slurm_task_status(task)
        if status:
            return f"Slurm job {task} is {status}"
    pid = state.get("pid")
    if state["state"] == "running" and pid and state.get("host") == socket.gethostname():
        try:
            os.kill(int(pid), 0)
            return f"process {pid} is training it"
        except ProcessLookupError:
            return None
        except PermissionError:
            return f"process {pid} is training it"
    return None


class Sweep:
    """One sweep: its file, fixed overrides, id, directory and the runs planned so far."""

    def __init__(self, spec: SweepSpec, fixed: list[str], sweep_id: str | None, max_runs: int | None):
        self.spec, self.fixed = spec, fixed
        base = compose_run([*fixed, "run_id=sweep"], f"{spec.path}: the overrides")
        self.sweep_id = sweep_id or f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', spec.name)}-{spec.fingerprint(fixed)}"
        self.output_root = Path(base.paths.output_root).resolve()
        self.store = SweepStore(self.output_root / "sweeps" / self.sweep_id)
        self.target = target_runs(spec, max_runs)
        self.runs: list[PlannedRun] = self.store.runs() if self.store.exists() else []

    def plan(self, index: int, params: dict) -> PlannedRun:
        return plan_run(self.sweep_id, index, params, self.fixed, str(self.spec.path))

    def plan_upfront(self) -> list[PlannedRun]:
        """Grid: every point; random: new points up to the target (composed now, so a bad point stops the sweep
        before anything trains). Bayes points come one (or one batch) at a time."""
        if self.spec.method == "grid":
            points = grid_points(self.spec)[len(self.runs):]
        elif self.spec.method == "random" and self.target > len(self.runs):
            points = random_points(self.spec, self.target - len(self.runs), [r.params for r in self.runs],
                                   seed=f"{self.sweep_id}:{len(self.runs)}")
        else:
            points = []
        return [self.plan(len(self.runs) + i, p) for i, p in enumerate(points)]

    def history(self, extra: list[PlannedRun] = ()) -> list:
        """The runs as bayes sees them: finished ones with their CSV metrics, failed ones, unfinished ones."""
        history = []
        for run in self.runs + list(extra):
            state = self.store.state(run.run_id)["state"] if run in self.runs else "pending"
            history.append(history_run(run.params, state, read_metrics(run) if state == "done" else None))
        return history

    def suggest_bayes(self, count: int) -> list[PlannedRun]:
        new: list[PlannedRun] = []
        for _ in range(count):
            index = len(self.runs) + len(new)
            params = bayes_point(self.spec, self.history(new), seed=f"{self.sweep_id}:{index}")
            new.append(self.plan(index, params))
        return new

    def add(self, runs: list[PlannedRun]) -> None:
        self.store.add_runs(runs)
        for run in runs:
            if not self.store.state_file(run.run_id).exists():
                self.store.set_state(run.run_id, "pending", run_dir=run.run_dir)
        self.runs += runs

    def open(self) -> None:
        self.store.create_or_check(self.sweep_id, self.spec.config, self.spec.path, self.fixed)


def describe(run: PlannedRun) -> str:
    return " ".join(f"{k}={v}" for k, v in run.params.items())


def train_locally(sweep: Sweep, run: PlannedRun, position: str) -> bool:
    """`dtl train` for one run in a child process (output to the sweep's logs/); True when it finished."""
    store, metric = sweep.store, sweep.spec.metric
    log = store.log_file(run.run_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "experiments.cli", "train", *run.overrides]
    print(f"[{position}] {run.run_id} ({describe(run)}): training, log {log}", flush=True)
    started = time.time()
    with open(log, "ab") as out:
        out.write(f"\n$ {shlex.join(command)}\n".encode())
        out.flush()
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=child_env())
        store.set_state(run.run_id, "running", pid=proc.pid, run_dir=run.run_dir, log=str(log))
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            store.set_state(run.run_id, "failed", returncode=None, reason="interrupted", run_dir=run.run_dir,
                            log=str(log))
            raise
    seconds = round(time.time() - started, 1)
    if code == 0:
        value = read_metrics(run).get(metric) if metric else None
        store.set_state(run.run_id, "done", returncode=0, seconds=seconds, run_dir=run.run_dir, log=str(log),
                        **({"metric": {metric: value}} if value is not None else {}))
        print(f"[{position}] {run.run_id}: done in {seconds:.0f} s" + (f", {metric}={value:.4g}" if value is not None
                                                                       else ""), flush=True)
        return True
    store.set_state(run.run_id, "failed", returncode=code, seconds=seconds, run_dir=run.run_dir, log=str(log))
    tail = log.read_text(errors="replace").splitlines()[-15:]
    print(f"[{position}] {run.run_id}: FAILED (exit {code}) after {seconds:.0f} s; last lines of {log}:\n    "
          + "\n    ".join(tail), file=sys.stderr, flush=True)
    return False


def run_local(sweep: Sweep) -> int:
    """Train the unfinished runs one after another; bayes suggests each next point from the finished ones."""
    done_before = [r for r in sweep.runs[:sweep.target] if sweep.store.state(r.run_id)["state"] == "done"]
    if done_before:
        print(f"{len(done_before)} of {sweep.target} runs already done: skipping "
              + ", ".join(r.run_id for r in done_before))
    attempted: set[int] = set()
    while True:
        run = next((r for r in sweep.runs[:sweep.target] if r.index not in attempted
                    and sweep.store.state(r.run_id)["state"] != "done"), None)
        if run is None and sweep.spec.method == "bayes" and len(sweep.runs) < sweep.target:
            run = sweep.suggest_bayes(1)[0]
            sweep.add([run])
        if run is None:
            break
        attempted.add(run.index)
        busy = busy_elsewhere(sweep.store, run)
        if busy:
            print(f"[{run.index + 1}/{sweep.target}] {run.run_id}: skipped, {busy}")
            continue
        train_locally(sweep, run, f"{run.index + 1}/{sweep.target}")
    return print_summary(sweep)


def print_summary(sweep: Sweep) -> int:
    runs = sweep.runs[:sweep.target]
    states = {r.run_id: sweep.store.state(r.run_id) for r in runs}
    counts = {s: sum(st["state"] == s for st in states.values()) for s in ("done", "failed", "running", "pending")}
    metric = sweep.spec.metric
    print(f"\nsweep {sweep.sweep_id}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
          + f" of {len(runs)} ({sweep.store.root})")
    width = max((len(r.run_id) for r in runs), default=6)
    print(f"  {'run':<{width}}  {'state':<7}  {metric or '':>16}  parameters")
    for run in runs:
        value = read_metrics(run).get(metric) if metric and states[run.run_id]["state"] == "done" else None
        shown = f"{value:.4g}" if value is not None else "-"
        print(f"  {run.run_id:<{width}}  {states[run.run_id]['state']:<7}  {shown:>16}  {describe(run)}")
    print(f"compare: dtl compare --group {sweep.sweep_id} --wandb-dir {sweep.output_root}")
    return 1 if counts["failed"] else 0


def array_spec(indices: list[int], parallel: int | None) -> str:
    """`0-3,5,7-8` (Slurm's --array syntax), with `%N` to run at most N at once."""
    ranges: list[str] = []
    start = prev = None
    for i in sorted(indices) + [None]:
        if start is not None and (i is None or i != prev + 1):
            ranges.append(f"{start}-{prev}" if prev != start else f"{start}")
            start = None
        if i is not None and start is None:
            start = i
        prev = i
    return ",".join(ranges) + (f"%{parallel}" if parallel else "")


def render_array(sweep: Sweep, runs: list[PlannedRun], parallel: int | None,
                 dependency: str | None = None) -> tuple[str, Path]:
    """One sbatch job array over `runs` (dtl submit's script, each task training the point of its task id), held
    by `dependency` when given; the script and the folder of its logs."""
    slurm_defaults = [f"launcher.job_name={sweep.sweep_id}", f"launcher.log_dir={sweep.store.slurm_dir}"]
    launchers = {}
    for run in runs:
        cfg = compose_run(slurm_defaults + run.overrides, f"{sweep.spec.path} (run {run.run_id})")
        launchers.setdefault(json.dumps(OmegaConf.to_container(cfg.launcher, resolve=True), sort_keys=True),
                             (run, cfg))
    if len(launchers) > 1:
        (a, _), (b, _) = list(launchers.values())[:2]
        raise SweepFileError(f"{sweep.spec.path}: runs {a.run_id} and {b.run_id} ask Slurm for different resources "
                             "(launcher.*); one job array has one set: split the sweep or fix launcher.* by override")
    first, cfg = next(iter(launchers.values()))
    command = [sys.executable, "-m", "experiments.sweep.task", "array-task", str(sweep.store.root),
               *device_overrides(cfg, first.overrides)]
    script = render_sbatch(cfg, first.overrides, array=array_spec([r.index for r in runs], parallel), command=command,
                           dependency=dependency)
    return script, Path(cfg.launcher.log_dir).resolve()


def submit_array(sweep: Sweep, runs: list[PlannedRun], parallel: int | None, dependency: str | None = None) -> str:
    """Submit `runs` as one job array (held by `dependency`), record it, say so; the array's job id."""
    script, log_dir = render_array(sweep, runs, parallel, dependency)
    log_dir.mkdir(parents=True, exist_ok=True)  # Slurm does not create the folder of --output
    # named by its first run too: arrays of one sweep submitted within a second must not share a script file
    job, path = write_and_submit(script, sweep.store.slurm_dir, f"{sweep.sweep_id}-run{runs[0].index}", env=child_env())
    sweep.store.record_submission(job, [r.index for r in runs], path)
    print(f"submitted job array {job}: {len(runs)} runs ({', '.join(r.run_id for r in runs)})"
          + (f" after {dependency}" if dependency else "") + f", script {path}, "
          f"logs {log_dir}/{sweep.sweep_id}-{job}_<k>.out", flush=True)
    return job


def submit_slurm(sweep: Sweep, runs: list[PlannedRun], parallel: int | None) -> int:
    submit_array(sweep, runs, parallel)
    print(f"the same command again resubmits what did not finish; states in {sweep.store.root / 'runs'}")
    return 0


def slurm_batch(sweep: Sweep, batch: int) -> list[PlannedRun]:
    """The runs one submission takes: unfinished runs nobody is training, plus a batch of new bayes points."""
    pending = [r for r in sweep.runs[:sweep.target] if sweep.store.state(r.run_id)["state"] != "done"]
    busy = {r.run_id: b for r in pending if (b := busy_elsewhere(sweep.store, r))}
    for run_id, where in busy.items():
        print(f"{run_id}: not resubmitted, {where}")
    todo = [r for r in pending if r.run_id not in busy]
    if sweep.spec.method == "bayes" and len(sweep.runs) < sweep.target:
        new = sweep.suggest_bayes(min(batch, sweep.target - len(sweep.runs)))
        sweep.add(new)
        todo += new
    return todo


def dry_run(sweep: Sweep, planned: list[PlannedRun], slurm: bool, parallel: int | None, batch: int) -> int:
    """Print what the command would train or submit; write nothing."""
    runs = (sweep.runs + planned)[:sweep.target]
    if sweep.spec.method == "bayes" and len(runs) < sweep.target:
        sweep.runs, extra = runs, sweep.suggest_bayes(min(batch if slurm else 1, sweep.target - len(runs)))
        runs = runs + extra
        print(f"(bayes: the next {len(extra)} point(s); later ones follow from the finished runs' "
              f"{sweep.spec.metric})")
    print(f"sweep {sweep.sweep_id} ({sweep.spec.method}, {sweep.target} runs): {sweep.store.root}")
    todo = [r for r in runs if not sweep.store.exists() or sweep.store.state(r.run_id)["state"] != "done"]
    if slurm:
        print(render_array(sweep, todo, parallel)[0] if todo else "nothing to submit: every run is done")
        return 0
    for run in runs:
        state = sweep.store.state(run.run_id)["state"] if sweep.store.exists() else "new"
        print(f"[{state}] dtl train {shlex.join(run.overrides)}")
    return 0


def main(argv: list[str]) -> int:
    return run_sweep(parse_args(argv))


def run_sweep(ns: argparse.Namespace) -> int:
    try:
        spec = load_sweep(ns.file)
        check_fixed_overrides(spec, ns.overrides)
        if ns.backend == "wandb":
            return run_wandb_backend(spec, ns.overrides, max_runs=ns.max_runs, project=ns.project,
                                     entity=ns.entity, count=ns.count_per_task, tasks=ns.array,
                                     parallel=ns.parallel, dry_run=ns.dry_run)
        sweep = Sweep(spec, ns.overrides, ns.sweep_id, ns.max_runs)
        planned = sweep.plan_upfront()  # composes every new point: a bad one stops here, before anything is written
        if ns.dry_run:
            return dry_run(sweep, planned, ns.slurm, ns.parallel, ns.batch)
        with sweep.store.lock():
            sweep.open()
            if sweep.store.runs() != sweep.runs:  # another dtl sweep added points meanwhile
                sweep.runs = sweep.store.runs()
                planned = sweep.plan_upfront()
            sweep.add(planned)
            if not ns.slurm:
                return run_local(sweep)
            todo = slurm_batch(sweep, ns.batch)
            if not todo:
                print(f"sweep {sweep.sweep_id}: nothing to submit")
                return print_summary(sweep)
            return submit_slurm(sweep, todo, ns.parallel)
    except (SweepFileError, SweepRunError, SweepStateError) as e:
        print(f"dtl sweep: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as e:  # engine limits (too few distinct points), sbatch refusals
        print(f"dtl sweep: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
