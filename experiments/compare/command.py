"""`dtl compare`: runs and sweeps side by side: mean +- 95 % interval over seeds per variant, the differences from
the baseline a paired t-test over seeds finds significant, printed and written as markdown and an HTML report."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dtl_foundation.atomic_files import atomic_write_text
from experiments.compare.table import (ComparisonError, ComparisonTable, build_table, reading_guide,
                                    settings_differences, table_cells, text_table)
from experiments.compare.report_html import render_report
from experiments.compare.run_logs import (RunLog, RunLogError, find_run_dirs, is_run_dir, read_run,
                                          wandb_api_group_runs, wandb_group_runs)

EXAMPLES = """examples:
  dtl compare outputs/baseline_demo outputs/emodiff_demo --out reports/ablation
  dtl compare outputs/ --metric test/mouth_error --metric 'val/*' --baseline baseline_demo
  dtl compare --group emodiff_demo --wandb-dir outputs/      (offline W&B runs of a group)
  dtl compare --group emodiff_demo --wandb-project me/dreamtalk-lab   (W&B API, needs network)
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="dtl compare", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
        description="Compare runs: runs differing only in seed form a variant; each metric is shown as mean ± 95 % "
                    "interval over seeds, the best variant marked, with deltas against a baseline variant and their "
                    "p-value by a paired t-test over seeds (* significant at 0.05).")
    parser.add_argument("paths", nargs="*", type=Path,
                        help="run directories, or folders to search for run directories (a sweep, outputs/)")
    parser.add_argument("--group", help="a W&B group (the experiment name, or a sweep's group)")
    parser.add_argument("--wandb-dir", type=Path,
                        help="with --group: search this folder for offline W&B run files instead of the W&B API")
    parser.add_argument("--wandb-project", default=None,
                        help="with --group and no --wandb-dir: [ENTITY/]PROJECT for the W&B API "
                             "(default: $WANDB_ENTITY/$WANDB_PROJECT, project dreamtalk-lab)")
    parser.add_argument("--metric", action="append", default=[],
                        help="a metric or glob to compare (repeatable; default: every test/* metric)")
    parser.add_argument("--goal", action="append", default=[], metavar="METRIC=min|max",
                        help="which way is better, where the name does not say (repeatable)")
    parser.add_argument("--baseline", help="the variant the deltas are taken against (label or experiment name; "
                                           "default: the one experiment with 'baseline' in its name)")
    parser.add_argument("--ignore", action="append", default=[], metavar="KEY",
                        help="a config key or glob that does not make a variant (repeatable), e.g. trainer.devices")
    parser.add_argument("--images", type=int, default=6, help="sample images to embed in the HTML report")
    parser.add_argument("--video", action="append", default=[], metavar="LABEL=MP4",
                        help="a video shown (playable, with sound) in the HTML report, side by side with the other "
                             "--video ones, with the frame strip `dtl generate video` writes beside it")
    parser.add_argument("--out", type=Path, help="write OUT/report.md and OUT/report.html")
    args = parser.parse_args(argv)
    if not args.paths and not args.group:
        parser.error("give run directories, a folder of runs, or --group NAME")
    if args.wandb_dir and not args.group:
        parser.error("--wandb-dir needs --group")
    return args


def runs_under(path: Path, warnings: list[str]) -> list[RunLog]:
    """The run at `path`, or every readable run under it (the unreadable ones become warnings)."""
    if not path.exists():
        raise RunLogError(f"{path}: no such file or directory")
    if is_run_dir(path):
        return [read_run(path)]
    if not path.is_dir():
        raise RunLogError(f"{path}: neither a run directory nor a folder of runs")
    run_dirs = find_run_dirs(path)
    if not run_dirs:
        raise RunLogError(f"{path}: no runs under it (no folder holds csv/attempt_*/metrics.csv, W&B run files, "
                          "meta/attempt_*/config.yaml or checkpoints/)")
    runs, skipped = [], []
    for run_dir in run_dirs:
        try:
            runs.append(read_run(run_dir))
        except RunLogError as e:
            skipped.append(str(e))
    if not runs:
        raise RunLogError(f"{path}: none of its {len(run_dirs)} run directories has logs:\n  " + "\n  ".join(skipped))
    warnings += [f"skipped {message}" for message in skipped]
    return runs


def collect_runs(args: argparse.Namespace, warnings: list[str]) -> list[RunLog]:
    runs: list[RunLog] = []
    for path in args.paths:
        runs += runs_under(path, warnings)
    if args.group and args.wandb_dir:
        runs += wandb_group_runs(args.wandb_dir, args.group)
    elif args.group:
        project = args.wandb_project or os.environ.get("WANDB_PROJECT", "dreamtalk-lab")
        if "/" not in project and os.environ.get("WANDB_ENTITY"):
            project = f"{os.environ['WANDB_ENTITY']}/{project}"
        runs += wandb_api_group_runs(project, args.group)
    unique: dict[str, RunLog] = {}
    for run in runs:  # the same run reached twice (a folder and its group) counts once
        key = str(Path(run.location).resolve()) if run.source != "wandb-api" else run.location
        unique.setdefault(key, run)
    return list(unique.values())


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def markdown_report(table: ComparisonTable) -> str:
    header, rows = text_table(table)
    lines = ["# Run comparison", "", reading_guide(table), "", _markdown_row(header),
             _markdown_row(["---"] * len(header)), *map(_markdown_row, rows), ""]
    lines += [f"- {note}" for note in table.notes] + ([""] if table.notes else [])
    diff_header, diff_rows, more = settings_differences(table.variants)
    if diff_rows:
        lines += ["## Settings that differ between variants", "", _markdown_row(diff_header),
                  _markdown_row(["---"] * len(diff_header)), *map(_markdown_row, diff_rows), ""]
        lines += [f"(and {more} more)", ""] if more else []
    lines += ["## Runs", "", _markdown_row(["variant", "run", "seed", "source", "location"]),
              _markdown_row(["---"] * 5)]
    lines += [_markdown_row([v.label, r.name, str(r.seed), r.source, r.location]) for v in table.variants
              for r in v.runs]
    return "\n".join(lines) + "\n"


def print_table(table: ComparisonTable, console: Console) -> None:
    header, rows = table_cells(table)
    if not console.is_terminal:  # a pipe or file gets the whole table, not one squeezed to 80 columns
        _, texts = text_table(table)
        widths = [max(len(r[i]) for r in [header, *texts]) for i in range(len(header))]
        console.width = max(80, sum(widths) + 3 * len(widths) + 1)
    out = Table(title="Run comparison (mean ± 95 % interval over seeds; ★ best; * significant, paired over seeds)",
                header_style="bold")
    for i, name in enumerate(header):
        out.add_column(name, justify="left" if i == 0 else "right", no_wrap=True)
    styles = {"best": "bold green", "better": "green", "worse": "red"}
    for row in rows:
        out.add_row(*(Text(text, style=styles.get(kind, "")) for text, kind in row))
    console.print(out)
    for note in table.notes:
        console.print(f"note: {note}", highlight=False)


def report_videos(specs: list[str]) -> list[tuple[str, Path]]:
    """LABEL=MP4 pairs, each file checked before anything is written."""
    videos = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            raise ComparisonError(f"--video {spec!r}: give LABEL=PATH, e.g. warp=outputs/demo_video/001.mp4")
        if not Path(path).is_file():
            raise ComparisonError(f"--video {label}: {path} does not exist")
        if Path(path).suffix.lower() != ".mp4":
            raise ComparisonError(f"--video {label}: {path} is not an MP4 (browsers play MP4 with H.264)")
        videos.append((label, Path(path)))
    return videos


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    warnings: list[str] = []
    try:
        videos = report_videos(args.video)
        runs = collect_runs(args, warnings)
        table = build_table(runs, metrics=args.metric, goals=args.goal, baseline=args.baseline,
                            ignore=tuple(args.ignore))
    except (RunLogError, ComparisonError) as e:
        print(f"dtl compare: error: {e}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(f"dtl compare: warning: {warning}", file=sys.stderr)
    if args.out:  # written before printing, so a closed pipe on stdout cannot lose the reports
        atomic_write_text(args.out / "report.md", markdown_report(table))
        atomic_write_text(args.out / "report.html", render_report(table, max_images=args.images, videos=videos))
    # piped to a file or a log, rich would fold the table into 80 columns (unless $COLUMNS says otherwise)
    wide = sys.stdout.isatty() or os.environ.get("COLUMNS")
    print_table(table, Console(highlight=False, width=None if wide else 240))
    if args.out:
        print(f"wrote {args.out / 'report.md'} and {args.out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
