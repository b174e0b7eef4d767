"""`dtl`: one command for the platform; each subcommand hands its arguments to its entry point."""

from __future__ import annotations

import argparse
import os
import sys

SUBCOMMANDS = {
    "train": "train a model: dtl train experiment=NAME [hydra overrides]",
    "eval": "evaluate generated videos: dtl eval GENERATED [--reference REF | --checkpoint RUN [--renderer RUN]] "
            "[--metrics M...] [--out DIR] [--group G]",
    "generate": "generate from audio: dtl generate blendshapes (ARKit CSV) | video --portrait IMG (MP4 with audio)",
    "sweep": "run a sweep (W&B sweep YAML): dtl sweep FILE [--slurm | --backend wandb] [overrides]",
    "compare": "compare runs: dtl compare RUN_DIR|FOLDER... [--group NAME [--wandb-dir DIR]] [--metric M] "
               "[--baseline V] [--out DIR]",
    "submit": "submit a training job to Slurm: dtl submit [--dry-run] experiment=NAME launcher.gpus_per_node=N",
    "data": "corpus tools: demo [--video], videos, scan, features, extract (ARKit tracks from talking videos)",
    "weights": "check the pretrained weights the metrics need: dtl weights check",
    "export": "DeepSpeed ZeRO checkpoint -> one fp32 file: dtl export RUN_DIR_OR_CKPT [--out FILE]",
}


def run_train(overrides: list[str]) -> int:
    from experiments.run_dir import resolve_run_id
    from experiments.train import main as train_main

    explicit = next((o.split("=", 1)[1] for o in overrides if o.startswith("run_id=")), None)
    if explicit is None:
        run_id = resolve_run_id()
        if "-m" in overrides or "--multirun" in overrides:  # one run directory per job of the sweep
            os.environ.setdefault("DTL_SWEEP_ID", run_id)
            run_id = f"{run_id}-job" + "${hydra:job.num}"
        overrides = overrides + [f"run_id={run_id}"]
    sys.argv = ["dtl train", *overrides]
    # Single-node DDP: Lightning starts ranks 1..N-1 as `python -m <__main__'s module> sys.argv[1:]`, which would be
    # `dtl` without its `train`; make that module the Hydra entry point itself.
    import importlib.util

    import __main__
    __main__.__spec__ = importlib.util.find_spec("experiments.train")
    train_main()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="dtl", description="dreamtalk-lab: train, evaluate and compare emotional talking-head models.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(f"  {name:<9} {text}" for name, text in SUBCOMMANDS.items()))
    parser.add_argument("command", choices=list(SUBCOMMANDS), metavar="COMMAND", help="one of the commands below")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments of the command (see dtl COMMAND --help)")
    ns = parser.parse_args(argv[:1] if argv and not argv[0].startswith("-") else argv)
    rest = argv[1:]
    if ns.command == "train":
        return run_train(rest)
    if ns.command in ("data", "generate"):
        from experiments.data_cli import main as data_main
        from experiments.generate import main as generate_main

        try:
            return (data_main if ns.command == "data" else generate_main)(rest)
        except (ValueError, FileNotFoundError) as e:  # bad input: say which file and what, no traceback
            print(f"dtl {ns.command}: error: {e}", file=sys.stderr)
            return 1
    if ns.command == "submit":
        from experiments.submit import main as submit_main

        return submit_main(rest)
    if ns.command == "weights":
        from experiments.weights_cli import main as weights_main

        return weights_main(rest)
    if ns.command == "compare":
        from experiments.compare import main as compare_main

        return compare_main(rest)
    if ns.command == "sweep":
        from experiments.sweep import main as sweep_main

        return sweep_main(rest)
    if ns.command == "eval":
        from experiments.evaluate import main as eval_main

        return eval_main(rest)
    if ns.command == "export":
        from experiments.export import main as export_main

        return export_main(rest)
    parser.error(f"unknown command {ns.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
