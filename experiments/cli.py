"""`dtl`: one command for the platform; each subcommand hands its arguments to its entry point."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NamedTuple

from dtl_foundation.system_packages import SystemPackageMissing


class Subcommand(NamedTuple):
    entry: str  # "module:function", imported when the subcommand runs: `dtl compare` or `--help` never load torch
    help: str
    # Run as `python -m <module> ARGS` in this process's place (os.execv; same pid, so Slurm's signals still reach
    # it): the module's `__main__` calls the function. Lightning starts DDP ranks 1..N-1 as `python -m <the main
    # module> <argv[1:]>`, which must reach the same entry point.
    as_main_module: bool = False


SUBCOMMANDS = {
    "train": Subcommand("experiments.train:run_train", "train a model: dtl train experiment=NAME [hydra overrides]",
                        as_main_module=True),
    "eval": Subcommand("experiments.evaluate.command:main",
                       "evaluate generated videos: dtl eval GENERATED [--reference REF | --checkpoint RUN "
                       "[--renderer RUN]] [--metrics M...] [--out DIR] [--group G]"),
    "generate": Subcommand("experiments.generate.command:main",
                           "generate from audio: dtl generate blendshapes (ARKit CSV) | video --portrait IMG "
                           "(MP4 with audio)"),
    "sweep": Subcommand("experiments.sweep.entry:main",
                        "run a sweep (W&B sweep YAML): dtl sweep FILE [--slurm | --backend wandb] [overrides]"),
    "compare": Subcommand("experiments.compare.command:main",
                          "compare runs: dtl compare RUN_DIR|FOLDER... [--group NAME [--wandb-dir DIR]] [--metric M] "
                          "[--baseline V] [--out DIR]"),
    "submit": Subcommand("experiments.launch.submit:main",
                         "submit a training job to Slurm: dtl submit [--dry-run] experiment=NAME "
                         "launcher.gpus_per_node=N"),
    "data": Subcommand("experiments.data_cli:main",
                       "corpus tools: demo [--video], videos, scan, features, extract (ARKit tracks from talking "
                       "videos)"),
    "weights": Subcommand("experiments.weights_cli:main",
                          "check the pretrained weights the metrics need: dtl weights check"),
    "export": Subcommand("experiments.export:main",
                         "DeepSpeed ZeRO checkpoint -> one fp32 file: dtl export RUN_DIR_OR_CKPT [--out FILE]"),
    "study": Subcommand("experiments.study.cli:main",
                        "blind user studies of generated videos: dtl study create | serve | report | migrate"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="dtl", description="dreamtalk-lab: train, evaluate and compare emotional talking-head models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(f"  {name:<9} {sub.help}" for name, sub in SUBCOMMANDS.items()))
    parser.add_argument("command", choices=list(SUBCOMMANDS), metavar="COMMAND", help="one of the commands below")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the command (see dtl COMMAND --help)")
    ns = parser.parse_args(argv[:1] if argv and not argv[0].startswith("-") else argv)
    subcommand = SUBCOMMANDS[ns.command]
    module, function = subcommand.entry.split(":")
    if subcommand.as_main_module:
        os.execv(sys.executable, [sys.executable, "-m", module, *argv[1:]])
    entry = getattr(importlib.import_module(module), function)
    try:
        return entry(argv[1:])
    except (ValueError, FileNotFoundError, SystemPackageMissing) as e:  # say which file or package, no traceback
        print(f"dtl {ns.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
