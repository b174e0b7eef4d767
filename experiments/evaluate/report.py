"""Where `dtl eval` puts its results: metrics.json, per_video.csv, metrics.md (atomic writes) and a W&B run with
job_type=eval whose summaries keep the best value of each metric (define_metric max / min)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from dtl_foundation.atomic_files import atomic_write_text
from experiments.evaluate.scorers import GOALS
from experiments.evaluate.validity import not_valid_numbers, validity_cells
from experiments.wandb_report_run import report_run


def table_cell(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def json_number(value: Any) -> Any:
    """Strict JSON has no inf or NaN: they are written as the strings "inf", "-inf", "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: json_number(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_number(v) for v in value]
    return value


def format_number(value: float) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def markdown_table(result: dict[str, Any]) -> str:
    """Summary table (metric, value, better, videos) plus the skipped metrics with their reasons."""
    lines = [f"# dtl eval: {result['generated']}", ""]
    if result.get("reference"):
        lines += [f"Reference: {result['reference']}", ""]
    lines += ["| metric | value | better | videos | valid | frames scored | face check |",
              "|---|---|---|---|---|---|---|"]
    flagged = not_valid_numbers(result)
    for name, value in result["metrics"].items():
        goal = {"max": "higher", "min": "lower"}.get(GOALS.get(name, ""), "")
        shown = f"~~{format_number(value)}~~ not valid" if name in flagged else format_number(value)
        lines.append(f"| {name} | {shown} | {goal} | {result['counts'].get(name, '')} | "
                     + " | ".join(validity_cells(result, name)) + " |")
    per_video = result.get("validity", {}).get("per_video", {})
    invalid = [(video, group, verdict["why"]) for video, groups in per_video.items()
               for group, verdict in groups.items() if not verdict["valid"]]
    if invalid:
        lines += ["", "Not valid, per video:", ""]
        lines += [f"- {video}: **{group}**: {why}" for video, group, why in invalid]
    if result.get("controls"):
        lines += ["", *controls_table(result)]
    if result["skipped"]:
        lines += ["", "Not computed:", ""]
        lines += [f"- **{group}**: {reason}" for group, reason in result["skipped"].items()]
    if result["notes"]:
        lines += ["", "Notes:", ""]
        lines += [f"- {group}: {note}" for group, note in result["notes"].items()]
    lines += ["", "| metric | seconds |", "|---|---|"]
    lines += [f"| {group} | {seconds:.2f} |" for group, seconds in result["seconds"].items()]
    return "\n".join(lines) + "\n"


def controls_table(result: dict[str, Any]) -> list[str]:
    """Your videos' numbers beside the controls' (experiments.evaluate.controls); ~~struck~~: not valid."""
    controls = result["controls"]
    names = list(controls)
    lines = ["Controls, made from your data: each metric must separate `faithful` from the controls it is meant to "
             "catch (docs/evaluation.md lists them); ~~struck~~: not valid", "",
             "| metric | better | your videos | " + " | ".join(names) + " |", "|---" * (3 + len(names)) + "|"]

    def cell(values: dict[str, Any], flagged: dict[str, str], name: str) -> str:
        if name not in values:
            return ""
        text = format_number(values[name])
        return f"~~{text}~~" if name in flagged else text

    for name in result["metrics"]:
        goal = {"max": "higher", "min": "lower"}.get(GOALS.get(name, ""), "")
        row = [cell(result["metrics"], result.get("not_valid", {}), name)]
        row += [cell(controls[c]["metrics"], controls[c]["not_valid"], name) for c in names]
        lines.append(f"| {name} | {goal} | " + " | ".join(row) + " |")
    predicted = {c: ", ".join(str(r.get("emotion_predicted", "")) for r in controls[c]["per_video"]) for c in names}
    if any(predicted.values()):
        lines.append("| emotion_predicted | | " + ", ".join(str(r.get("emotion_predicted", ""))
                                                       for r in result["per_video"]) + " | "
                     + " | ".join(predicted[c] for c in names) + " |")
    return lines


def per_video_csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: format_number(v) if isinstance(v, float) else v for k, v in row.items()})
    return out.getvalue()


def write_outputs(out_dir: Path, result: dict[str, Any]) -> dict[str, Path]:
    paths = {"json": out_dir / "metrics.json", "csv": out_dir / "per_video.csv", "markdown": out_dir / "metrics.md"}
    atomic_write_text(paths["json"], json.dumps(json_number(result), indent=1, allow_nan=False) + "\n")
    atomic_write_text(paths["csv"], per_video_csv(result["per_video"]))
    atomic_write_text(paths["markdown"], markdown_table(result))
    return paths


def log_to_wandb(result: dict[str, Any], out_dir: Path, group: str | None, project: str | None, name: str | None
                 ) -> str | None:
    """One W&B run (job_type=eval, offline unless DTL_WANDB_OFFLINE=false) with the metrics, their summaries and a
    per-video table; returns the run's directory."""
    import wandb

    with report_run(out_dir, "eval", name, group, project,
                    {k: v for k, v in result.items() if k in ("generated", "reference", "options")}) as run:
        for metric, goal in GOALS.items():
            run.define_metric(f"eval/{metric}", summary=goal)
        flagged = not_valid_numbers(result)
        # a number that is not valid is kept under eval/not_valid/, never as the eval/<metric> headline
        numbers = {f"eval/not_valid/{k}" if k in flagged else f"eval/{k}": v for k, v in result["metrics"].items()
                   if isinstance(v, (int, float))}
        rows = result["per_video"]
        columns = sorted({k for row in rows for k in row})
        # a number W&B cannot hold (NaN: not scorable for that video) is an empty cell, not a string in a number column
        table = wandb.Table(columns=columns, data=[[table_cell(row.get(c)) for c in columns] for row in rows])
        logged = {**numbers, "eval/per_video": table}
        if result.get("controls"):
            rows = [[control, metric, table_cell(value), metric not in entry["not_valid"]]
                    for control, entry in result["controls"].items() for metric, value in entry["metrics"].items()]
            logged["eval/controls"] = wandb.Table(columns=["control", "metric", "value", "valid"], data=rows)
        run.log(logged)
        for group_name, reason in result["skipped"].items():
            run.summary[f"eval/skipped/{group_name}"] = reason
        for group_name, verdict in result.get("validity", {}).get("overall", {}).items():
            run.summary[f"eval/valid/{group_name}"] = int(verdict["valid"])
            run.summary[f"eval/frames_scored/{group_name}"] = verdict["scored"] / max(verdict["frames"], 1)
            if not verdict["valid"]:
                run.summary[f"eval/validity/{group_name}"] = verdict["why"]
        return run.dir
