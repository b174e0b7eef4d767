"""A study report's files: markdown, HTML with one plot per criterion, CSV tables; and its W&B run (tables in the
compared runs' group)."""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from dataclasses import asdict
from pathlib import Path

from matplotlib.figure import Figure

from dtl_foundation.atomic_files import atomic_write_bytes, atomic_write_text
from experiments.study.report import StudyReport
from experiments.wandb_report_run import report_run

CRITERION_NAMES = {"lip_sync": "lip sync", "emotion": "emotion", "realism": "realism", "identity": "identity"}
TABLE_TITLES = {"participants": "Participants", "preferences": "Pairwise preferences", "mos": "Mean opinion scores",
                "agreement": "Inter-rater agreement"}


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _p(x: float) -> str:
    return "n/a" if math.isnan(x) else (f"{x:.2g}" if x < 0.001 else f"{x:.3f}")


def tables(report: StudyReport) -> dict[str, tuple[list[str], list[list[str]]]]:
    """The report's tables as (header, rows) of display strings."""
    out = {}
    participants = [[str(p.number), f"{p.answered}/{p.total}", f"{p.checks_passed}/{p.checks_passed + p.checks_failed}",
                     _num(p.minutes, 1), _num(p.median_trial_seconds, 1), p.excluded or "analysed"]
                    for p in report.participants]
    out["participants"] = (["participant", "answered", "attention checks passed", "minutes on task",
                            "median s per trial", "status"], participants)
    if report.design == "2afc":
        out["preferences"] = (["criterion", "A", "B", "n", "A preferred", "rate A", "95% Wilson CI", "p (binomial)"],
                              [[CRITERION_NAMES[r.criterion], r.method_a, r.method_b, str(r.n), str(r.wins_a),
                                _num(r.rate_a), f"[{_num(r.low)}, {_num(r.high)}]", _p(r.p_value)]
                               for r in report.preferences])
    else:
        out["mos"] = (["criterion", "method", "n", "MOS", "std", "95% bootstrap CI"],
                      [[CRITERION_NAMES[r.criterion], r.method, str(r.n), _num(r.mean, 2), _num(r.std, 2),
                        f"[{_num(r.low, 2)}, {_num(r.high, 2)}]"] for r in report.opinions])
    out["agreement"] = (["criterion", "Krippendorff's alpha"],
                        [[CRITERION_NAMES[c], _num(a)] for c, a in report.agreement.items()])
    return out


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows])


def _lead(report: StudyReport) -> str:
    analysed = len(report.analysed)
    return (f"Design {report.design}, methods {', '.join(report.methods)}; {analysed} of {len(report.participants)} "
            f"participants analysed (complete, at most {report.max_failed_checks} failed attention checks).")


def markdown(report: StudyReport, stamp: str) -> str:
    parts = [f"# User study {report.study}", "", _lead(report), ""]
    for name, (header, rows) in tables(report).items():
        parts += [f"## {TABLE_TITLES[name]}", "", _md_table(header, rows), ""]
    parts += [f"_{stamp}_", ""]
    return "\n".join(parts)


def criterion_png(report: StudyReport, criterion: str, stamp: str) -> bytes:
    figure = Figure(figsize=(7, 1.2 + 0.5 * max(len(report.methods), 2)), dpi=110)
    ax = figure.add_subplot()
    if report.design == "2afc":
        rows = [r for r in report.preferences if r.criterion == criterion]
        labels = [f"{r.method_a} over {r.method_b}" for r in rows]
        values = [r.rate_a for r in rows]
        errors = [[r.rate_a - r.low for r in rows], [r.high - r.rate_a for r in rows]]
        ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_xlabel("preference rate (95% Wilson interval); 0.5 = no preference")
    else:
        rows = [r for r in report.opinions if r.criterion == criterion]
        labels = [r.method for r in rows]
        values = [r.mean for r in rows]
        errors = [[r.mean - r.low for r in rows], [r.high - r.mean for r in rows]]
        ax.set_xlim(1, 5)
        ax.set_xlabel("mean opinion score (95% bootstrap interval)")
    errors = [[0 if math.isnan(e) else max(e, 0.0) for e in side] for side in errors]  # rounding: never below 0
    ax.barh(range(len(rows)), values, xerr=errors, color="#4c78a8", capsize=4)
    ax.set_yticks(range(len(rows)), [f"{label} (n={r.n})" for label, r in zip(labels, rows)])
    ax.invert_yaxis()
    ax.set_title(f"{report.study}: {CRITERION_NAMES[criterion]}")
    figure.text(0.01, 0.01, stamp, fontsize=6, color="#666")
    figure.tight_layout(rect=(0, 0.04, 1, 1))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def html_report(report: StudyReport, stamp: str) -> str:
    style = ("body{font-family:system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;"
             "margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f3f3f3}")
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>User study "
             f"{html.escape(report.study)}</title><style>{style}</style></head><body>",
             f"<h1>User study {html.escape(report.study)}</h1><p>{html.escape(_lead(report))}</p>"]
    for name, (header, rows) in tables(report).items():
        parts.append(f"<h2>{html.escape(TABLE_TITLES[name])}</h2><table><tr>"
                     + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
                     + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
                     + "</table>")
    parts.append("<h2>Plots</h2>")
    for criterion in report.criteria:
        png = base64.b64encode(criterion_png(report, criterion, stamp)).decode()
        parts.append(f"<figure><img alt='{html.escape(CRITERION_NAMES[criterion])}' "
                     f"src='data:image/png;base64,{png}'></figure>")
    parts.append(f"<p><small>{html.escape(stamp)}</small></p></body></html>")
    return "\n".join(parts)


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def write_report(report: StudyReport, out_dir: Path, stamp: str) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "report.md", "html": out_dir / "report.html",
             "participants": out_dir / "participants.csv", "answers": out_dir / "answers.csv"}
    atomic_write_text(paths["markdown"], markdown(report, stamp))
    atomic_write_text(paths["html"], html_report(report, stamp))
    atomic_write_text(paths["participants"], _csv([asdict(p) for p in report.participants]))
    atomic_write_text(paths["answers"], _csv(report.analysed_rows))
    if report.design == "2afc":
        paths["preferences"] = out_dir / "preferences.csv"
        atomic_write_text(paths["preferences"], _csv([asdict(r) for r in report.preferences]))
    else:
        paths["mos"] = out_dir / "mos.csv"
        atomic_write_text(paths["mos"], _csv([asdict(r) for r in report.opinions]))
    paths["agreement"] = out_dir / "agreement.csv"
    atomic_write_text(paths["agreement"], _csv([{"criterion": c, "krippendorff_alpha": "" if a is None else a}
                                                for c, a in report.agreement.items()]))
    for criterion in report.criteria:
        paths[f"plot_{criterion}"] = out_dir / f"{criterion}.png"
        atomic_write_bytes(paths[f"plot_{criterion}"], criterion_png(report, criterion, stamp))
    return paths


def log_to_wandb(report: StudyReport, out_dir: Path, group: str | None, project: str | None) -> str:
    """One W&B run (job_type=study, offline unless DTL_WANDB_OFFLINE=false) holding the report's tables."""
    import wandb

    with report_run(out_dir, "study", f"study-{report.study}", group, project,
                    {"study": report.study, "design": report.design, "methods": report.methods,
                     "criteria": report.criteria, "max_failed_checks": report.max_failed_checks}) as run:
        logged = {}
        for name, rows in (("preferences", report.preferences), ("mos", report.opinions),
                           ("participants", report.participants)):
            if rows:
                records = [asdict(r) for r in rows]
                columns = list(records[0])
                logged[f"study/{name}"] = wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in records])
        run.log(logged)
        for criterion, alpha in report.agreement.items():
            if alpha is not None:
                run.summary[f"study/alpha/{criterion}"] = alpha
        return run.dir
