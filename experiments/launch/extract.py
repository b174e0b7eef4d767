"""`dtl submit extract CORPUS --shards N [launcher.KEY=VALUE ...] [extract options]`: `dtl data extract` as one Slurm
job array, one shard of the corpus's clips per task.

Each task runs `dtl data extract CORPUS --shard array/N --workers <cpus per task> [extract options]`; a task warned
of its time limit (SIGUSR1) requeues itself, and a requeued or resubmitted task skips the clips already done. The
extract options are checked here, before anything is queued.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from experiments.config import compose_config
from experiments.data_cli import build_parser
from experiments.launch.sbatch import render_sbatch, write_and_submit

OWN_FLAGS = ("--shard", "--workers")  # set per task by the script


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str], list[str]]:
    """(own options, launcher overrides, `dtl data extract` arguments after the corpus)."""
    parser = argparse.ArgumentParser(prog="dtl submit extract", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--shards", type=int, required=True, help="array tasks, each extracting every N-th clip")
    parser.add_argument("--parallel", type=int, default=None, help="at most this many tasks at once (%%P)")
    parser.add_argument("--dry-run", action="store_true", help="print the sbatch script, submit nothing")
    ns, rest = parser.parse_known_args(argv)
    launcher = [a for a in rest if a.startswith("launcher.") and "=" in a]
    extract = [a for a in rest if a not in launcher]
    if ns.shards < 1:
        parser.error(f"--shards must be at least 1, got {ns.shards}")
    taken = [a for a in extract if a.split("=")[0] in OWN_FLAGS]
    if taken:
        parser.error(f"{' '.join(taken)}: the script sets --shard and --workers per task (use --shards and "
                     "launcher.cpus_per_task)")
    return ns, launcher, extract


def main(argv: list[str]) -> int:
    ns, launcher, extract = parse_args(argv)
    corpus = ns.corpus.resolve()
    if not corpus.is_dir():
        print(f"dtl submit extract: {corpus}: no such corpus directory", file=sys.stderr)
        return 2
    options = build_parser().parse_args(["extract", str(corpus), *extract])  # a bad option fails now, not queued
    if options.prior and not Path(options.prior).is_file():
        print(f"dtl submit extract: {options.prior}: no such expression prior file", file=sys.stderr)
        return 2
    out = Path(options.out or corpus).resolve()
    cfg = compose_config([f"launcher.job_name=extract-{corpus.name}",
                          f"launcher.log_dir={out / 'extraction' / 'slurm'}", "launcher.cpu_tasks_per_node=1",
                          *launcher])
    if int(cfg.launcher.gpus_per_node) > 1:
        print("dtl submit extract: one GPU per task at most (launcher.gpus_per_node=1 and --device cuda)",
              file=sys.stderr)
        return 2
    command = [sys.executable, "-m", "experiments.cli", "data", "extract", str(corpus),
               "--shard", f"array/{ns.shards}", "--workers", str(int(cfg.launcher.cpus_per_task)), *extract]
    array = f"0-{ns.shards - 1}" + (f"%{ns.parallel}" if ns.parallel else "")
    script = render_sbatch(cfg, [], array=array, command=command,
                           about=f"each array task extracts every {ns.shards}-th clip into {out}; a requeued task "
                                 "skips the clips already done")
    if ns.dry_run:
        print(script)
        return 0
    log_dir = Path(cfg.launcher.log_dir)
    try:
        job, _ = write_and_submit(script, log_dir, cfg.launcher.job_name)
    except RuntimeError as e:
        print(f"dtl submit extract: {e}", file=sys.stderr)
        return 1
    print(f"submitted job array {job} ({ns.shards} tasks): {shlex.join(command[2:])}; logs {log_dir}, "
          f"summaries {out / 'extraction'}/summary.shard-K-of-{ns.shards}.json")
    return 0
