"""Group runs into variants (the config less its seed and run identity) and tabulate mean +- 95 % interval over
seeds, marking the differences from the baseline a paired test over seeds finds significant."""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from experiments.compare.run_logs import RunLog, available_metrics
from experiments.compare.significance import TEST_NAME, PairedTest, interval95, paired_over_seeds

# Settings that name a run rather than what it trains: never part of a variant.
RUN_IDENTITY_KEYS = ("run_id", "seed", "tags", "resume", "ckpt_path", "task_name", "paths.*", "launcher.*",
                     "hydra.*", "logger.*.id", "logger.*.version", "logger.*.name", "logger.*.tags",
                     "callbacks.progress_bar.*")
# Metric name parts that say which way is better; checked in this order (so sync_loss is a loss).
NEUTRAL_PARTS = ("lag", "offset")  # judged by their size, not their sign: never ranked
MIN_PARTS = ("error", "loss", "distance", "dist", "lse_d", "fid", "lpips", "mse", "mae", "rmse", "lmd", "dd",
             "deviation")
MAX_PARTS = ("accuracy", "acc", "lse_c", "sync", "psnr", "ssim", "cpbd", "confidence", "csim")


class ComparisonError(ValueError):
    """A comparison that cannot be made as asked (unknown metric, unknown baseline, bad goal)."""


UNRANKED = "unranked"
"""The goal of a metric that is shown but never ranked: a reference, or a number without a better direction."""


def _name_has(metric: str, parts: tuple[str, ...]) -> bool:
    """Whether the metric's last name (test/sync_lag -> sync_lag) has one of `parts` between underscores."""
    name = metric.rsplit("/", 1)[-1].lower()
    return any(re.search(rf"(^|_){re.escape(part)}($|_)", name) for part in parts)


def unranked_reason(metric: str) -> str | None:
    """Why a metric is shown but not ranked, from its name; None when it may be ranked."""
    *folders, name = metric.lower().split("/")
    if name.endswith("_truth"):
        return "the ground truth's value at the same frames, a reference"
    if "source" in folders:
        return "the lip refiner's input scored the same way, a reference"
    if _name_has(metric, NEUTRAL_PARTS):
        return "a lag or offset, judged by its size rather than its sign"
    return None


def infer_goal(metric: str) -> str | None:
    """'min' or 'max' from the metric's name (test/mouth_error -> min, test/lse_c -> max); UNRANKED for a
    reference (`*_truth`, `source/...`) or a lag; None when unknown."""
    if unranked_reason(metric) is not None:
        return UNRANKED
    for parts, goal in ((MIN_PARTS, "min"), (MAX_PARTS, "max")):
        if _name_has(metric, parts):
            return goal
    return None


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings -> {'a.b.c': leaf}; lists stay leaves."""
    if not isinstance(config, dict):
        return {prefix: config}
    flat: dict[str, Any] = {}
    for key, value in config.items():
        flat.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) and value else
                    {f"{prefix}{key}": value})
    return flat


def _canonical(value: Any, run_dir: str | None, run_id: str | None) -> str:
    """A setting's value with the run's own directory and id taken out, as comparable text."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        if run_dir:
            value = value.replace(run_dir, "<run_dir>")
        if run_id:
            value = "/".join("<run_id>" if part == run_id else part for part in value.split("/"))
        return value
    return json.dumps(value, sort_keys=True, default=str)


def variant_settings(run: RunLog, ignore: tuple[str, ...] = ()) -> dict[str, str]:
    """The run's config less its run identity and seed (a key named *seed holding the run's seed is the seed)."""
    flat = flatten(run.config)
    run_dir = flat.get("paths.run_dir")
    run_id = flat.get("run_id")
    settings = {}
    for key, value in flat.items():
        if any(fnmatch.fnmatchcase(key, pattern) for pattern in (*RUN_IDENTITY_KEYS, *ignore)):
            continue
        if key.rsplit(".", 1)[-1].endswith("seed") and run.seed is not None and value == run.seed:
            continue
        settings[key] = _canonical(value, str(run_dir) if run_dir else None, str(run_id) if run_id else None)
    settings.setdefault("experiment_name", run.experiment)  # runs without a saved config still differ by name
    return settings


def differing_keys(settings: list[dict[str, str]]) -> list[str]:
    """Keys whose value is not the same in every one of `settings` (missing counts as a value)."""
    keys = sorted({k for s in settings for k in s})
    return [k for k in keys if len({s.get(k, "<unset>") for s in settings}) > 1]


def short_names(keys: list[str]) -> dict[str, str]:
    """Each dotted key by its shortest tail that no other key ends with (model.net.hidden -> hidden)."""
    names = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            tail = ".".join(parts[-n:])
            if not any(other != key and (other == tail or other.endswith("." + tail)) for other in keys):
                break
        names[key] = tail
    return names


@dataclass
class Variant:
    """Runs that differ only in seed (and run identity)."""

    label: str
    experiment: str
    settings: dict[str, str]
    runs: list[RunLog] = field(default_factory=list)

    @property
    def seeds(self) -> list[Any]:
        return sorted((r.seed for r in self.runs), key=lambda s: (s is None, str(type(s)), s if s is not None else 0))


def group_variants(runs: list[RunLog], ignore: tuple[str, ...] = ()) -> list[Variant]:
    """Runs grouped by their settings; labelled by experiment name, plus what tells apart same-named variants."""
    by_key: dict[tuple, Variant] = {}
    for run in runs:
        settings = variant_settings(run, ignore)
        key = tuple(sorted(settings.items()))
        if key not in by_key:
            by_key[key] = Variant(label=run.experiment, experiment=run.experiment, settings=settings)
        by_key[key].runs.append(run)
    variants = list(by_key.values())
    for experiment in {v.experiment for v in variants}:
        same_name = [v for v in variants if v.experiment == experiment]
        if len(same_name) < 2:
            continue
        keys = [k for k in differing_keys([v.settings for v in same_name]) if k != "experiment_name"]
        names = short_names(keys)
        for v in same_name:
            shown = ", ".join(f"{names[k]}={v.settings.get(k, '<unset>')}" for k in keys[:3])
            v.label = f"{experiment} [{shown}{', ...' if len(keys) > 3 else ''}]"
    seen: dict[str, int] = {}
    for v in variants:  # labels must stay unique when same-named variants agree on the keys shown
        seen[v.label] = seen.get(v.label, 0) + 1
        if seen[v.label] > 1:
            v.label = f"{v.label} #{seen[v.label]}"
    return sorted(variants, key=lambda v: v.label)


def pooling_hints(variants: list[Variant]) -> list[str]:
    """A note for each experiment whose variants are single runs of distinct seeds differing only in paths,
    as when each seed of a stage reads the same seed's run of another stage: `--ignore` pools them."""
    hints = []
    for experiment in sorted({v.experiment for v in variants}):
        same = [v for v in variants if v.experiment == experiment]
        seeds = [str(s) for v in same for s in v.seeds]
        if len(same) < 2 or any(len(v.runs) != 1 for v in same) or len(set(seeds)) != len(seeds):
            continue
        keys = [k for k in differing_keys([v.settings for v in same]) if k != "experiment_name"]
        if keys and all("/" in v.settings.get(k, "") for v in same for k in keys):
            hints.append(f"{experiment}: {len(same)} variants of one run each (seeds {', '.join(seeds)}) differ "
                         f"only in {', '.join(keys)}, which are paths; if each is its seed's input (another "
                         f"stage's run), {' '.join(f'--ignore {k}' for k in keys)} pools them over seeds")
    return hints


@dataclass
class Cell:
    """One variant's values of one metric over its runs, and the runs' seeds."""

    values: list[float]
    seeds: list[Any] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds; None for a single run."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else None

    @property
    def interval(self) -> float | None:
        """Half-width of the 95 % confidence interval of the mean; None for a single run."""
        return interval95(self.values)

    def by_seed(self) -> dict[Any, float]:
        return {seed: value for seed, value in zip(self.seeds, self.values) if seed is not None}


@dataclass
class ComparisonTable:
    """Per variant and metric: mean +- 95 % interval over seeds, the best variant per metric, deltas against a
    baseline and their paired test over seeds."""

    variants: list[Variant]
    metrics: list[str]
    goals: dict[str, str | None]
    cells: dict[tuple[str, str], Cell]
    best: dict[str, str | None]
    baseline: str | None
    notes: list[str]

    def cell(self, variant: str, metric: str) -> Cell | None:
        return self.cells.get((variant, metric))

    def delta(self, variant: str, metric: str) -> tuple[float, float | None] | None:
        """(variant mean - baseline mean, that relative to |baseline mean|) or None without a baseline value."""
        if self.baseline is None or variant == self.baseline:
            return None
        ours, theirs = self.cell(variant, metric), self.cell(self.baseline, metric)
        if ours is None or theirs is None:
            return None
        diff = ours.mean - theirs.mean
        return diff, (diff / abs(theirs.mean) if theirs.mean != 0 else None)

    def significance(self, variant: str, metric: str) -> PairedTest | None:
        """The paired test over seeds of the variant against the baseline (None without two shared seeds)."""
        if self.baseline is None or variant == self.baseline:
            return None
        ours, theirs = self.cell(variant, metric), self.cell(self.baseline, metric)
        if ours is None or theirs is None:
            return None
        return paired_over_seeds(ours.by_seed(), theirs.by_seed())

    def improves(self, variant: str, metric: str) -> bool | None:
        """Whether the variant beats the baseline on the metric (None when the goal or a value is unknown)."""
        delta, goal = self.delta(variant, metric), self.goals.get(metric)
        if delta is None or goal not in ("min", "max") or delta[0] == 0:
            return None
        return (delta[0] < 0) == (goal == "min")


def select_metrics(runs: list[RunLog], requested: list[str]) -> list[str]:
    """The metrics named (exact names or glob patterns); by default every test/* metric."""
    available = available_metrics(runs)
    if not available:
        raise ComparisonError("the runs logged no numeric metrics")
    patterns = requested or ["test/*"]
    chosen: list[str] = []
    for pattern in patterns:
        matches = [m for m in available if fnmatch.fnmatchcase(m, pattern)]
        if not matches:
            what = "no test/* metric (the runs were not tested?)" if not requested else f"unknown metric {pattern!r}"
            raise ComparisonError(f"{what}; available: {', '.join(available)}")
        chosen += [m for m in matches if m not in chosen]
    return chosen


def parse_goals(pairs: list[str]) -> dict[str, str]:
    """['test/x=max', ...] -> {'test/x': 'max'}."""
    goals = {}
    for pair in pairs:
        metric, _, goal = pair.rpartition("=")
        if not metric or goal not in ("min", "max"):
            raise ComparisonError(f"--goal {pair!r}: expected METRIC=min or METRIC=max")
        goals[metric] = goal
    return goals


def choose_baseline(variants: list[Variant], requested: str | None, notes: list[str]) -> str | None:
    """The named variant (by label or unique experiment name), else the one experiment named *baseline*."""
    labels = [v.label for v in variants]
    if requested:
        by_label = [v for v in variants if v.label == requested]
        by_experiment = [v for v in variants if v.experiment == requested]
        if by_label or len(by_experiment) == 1:
            return (by_label or by_experiment)[0].label
        reason = "matches several variants" if by_experiment else "is not a variant"
        raise ComparisonError(f"--baseline {requested!r} {reason}; variants: {'; '.join(labels)}")
    named = [v for v in variants if "baseline" in v.experiment.lower()]
    if len(named) == 1:
        return named[0].label
    if len(named) > 1:
        notes.append(f"no baseline: {len(named)} variants have 'baseline' in their name; choose one with --baseline")
    return None


def build_table(runs: list[RunLog], metrics: list[str] | None = None, goals: list[str] | None = None,
                baseline: str | None = None, ignore: tuple[str, ...] = ()) -> ComparisonTable:
    """Group the runs into variants and summarise each chosen metric over their seeds."""
    if not runs:
        raise ComparisonError("no runs to compare")
    chosen = select_metrics(runs, list(metrics or []))
    explicit_goals = parse_goals(list(goals or []))
    unknown = sorted(set(explicit_goals) - set(chosen))
    if unknown:
        raise ComparisonError(f"--goal for {', '.join(unknown)}, which is not among the compared metrics "
                              f"({', '.join(chosen)})")
    variants = group_variants(runs, ignore)
    notes: list[str] = pooling_hints(variants)
    goal_of = {m: explicit_goals.get(m, infer_goal(m)) for m in chosen}
    cells = {}
    for v in variants:
        for m in chosen:
            logged = [r for r in v.runs if m in r.final]
            if logged:
                cells[(v.label, m)] = Cell([r.final[m] for r in logged], [r.seed for r in logged])
    for v in variants:  # dtl eval keeps a number that is not valid under eval/not_valid/, never as the headline
        for m in chosen:
            flagged = [r.name for r in v.runs if m.startswith("eval/") and f"eval/not_valid/{m[5:]}" in r.final]
            if flagged:
                notes.append(f"{m} of {v.label}: NOT VALID in {', '.join(flagged)} (too few frames scored or faces "
                             f"that fail the face check; the number is kept as eval/not_valid/{m[5:]}, the reason "
                             "in metrics.json)")
    best: dict[str, str | None] = {}
    unranked: dict[str, list[str]] = {}
    for m in chosen:
        if goal_of[m] == UNRANKED:
            unranked.setdefault(unranked_reason(m), []).append(m)
    if unranked:
        notes.append("not ranked: " + "; ".join(f"{', '.join(ms)} ({reason})" for reason, ms in unranked.items())
                     + "; --goal METRIC=min|max ranks one")
    for m in chosen:
        scored = [(cells[(v.label, m)].mean, v.label) for v in variants if (v.label, m) in cells]
        if goal_of[m] is None:
            notes.append(f"{m}: which way is better is not known from its name; pass --goal {m}=min|max")
        ranked = goal_of[m] in ("min", "max") and len(scored) > 1
        best[m] = (min(scored) if goal_of[m] == "min" else max(scored))[1] if ranked else None
    return ComparisonTable(variants=variants, metrics=chosen, goals=goal_of, cells=cells, best=best,
                           baseline=choose_baseline(variants, baseline, notes), notes=notes)


def format_number(x: float, digits: int = 4, signed: bool = False) -> str:
    sign = "+" if signed else ""
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-3):
        return f"{x:{sign}.{digits - 1}e}"
    return f"{x:{sign}.{digits}f}"


def format_cell(cell: Cell | None, runs_in_variant: int) -> str:
    """'0.2173 ± 0.0012' (mean ± 95 % interval), with (n=k) when only k of the variant's runs logged the metric;
    '-' when none did."""
    if cell is None:
        return "-"
    text = format_number(cell.mean) + (f" ± {format_number(cell.interval)}" if cell.interval is not None else "")
    return text + (f" (n={cell.n})" if cell.n != runs_in_variant else "")


def format_delta(delta: tuple[float, float | None] | None, test: PairedTest | None = None) -> str:
    """'+0.0012 (+3.4%) p=0.012 *': the difference, and with a paired test its p-value, * when significant."""
    if delta is None:
        return ""
    diff, relative = delta
    text = format_number(diff, signed=True) + (f" ({relative:+.1%})" if relative is not None else "")
    if test is not None:
        text += f" p={test.p_value:.2g}" + (" *" if test.significant else "")
    return text


def goal_arrow(goal: str | None) -> str:
    return {"min": " ↓", "max": " ↑"}.get(goal or "", "")


def reading_guide(table: ComparisonTable) -> str:
    """One line that says how to read the table."""
    return (f"{sum(len(v.runs) for v in table.variants)} runs in {len(table.variants)} variants; mean ± 95 % "
            "confidence interval over seeds (Student t; n=k: only k runs logged the metric); ★ best per metric; "
            "↓/↑ lower/higher is better (no arrow: not ranked)"
            + (f"; Δ against {table.baseline}, p from a {TEST_NAME}, * significant at 0.05." if table.baseline
               else "."))


def table_cells(table: ComparisonTable) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """Header and rows of (text, kind) cells; kind is 'best', 'better' or 'worse' (than the baseline) or ''.
    The best value per metric carries a ★ and the baseline row says so."""
    header = ["variant", "runs", "seeds"]
    for m in table.metrics:
        header.append(m + goal_arrow(table.goals[m]))
        if table.baseline:
            header.append(f"Δ {m}")
    rows = []
    for v in table.variants:
        row = [(v.label + (" (baseline)" if v.label == table.baseline else ""), ""), (str(len(v.runs)), ""),
               (", ".join(str(s) for s in v.seeds), "")]
        for m in table.metrics:
            best = table.best.get(m) == v.label
            row.append((format_cell(table.cell(v.label, m), len(v.runs)) + (" ★" if best else ""),
                        "best" if best else ""))
            if table.baseline:
                better = table.improves(v.label, m)
                row.append((format_delta(table.delta(v.label, m), table.significance(v.label, m)),
                            "" if better is None else "better" if better else "worse"))
        rows.append(row)
    return header, rows


def text_table(table: ComparisonTable) -> tuple[list[str], list[list[str]]]:
    """Header and rows as plain text, for the terminal and markdown."""
    header, rows = table_cells(table)
    return header, [[text for text, _ in row] for row in rows]


def settings_differences(variants: list[Variant], limit: int = 40) -> tuple[list[str], list[list[str]], int]:
    """Header, rows (setting, value per variant) of the settings that differ between variants, and how many
    were left out beyond `limit`."""
    keys = differing_keys([v.settings for v in variants])
    header = ["setting", *(v.label for v in variants)]
    rows = [[k, *(v.settings.get(k, "<unset>") for v in variants)] for k in keys[:limit]]
    return header, rows, max(len(keys) - limit, 0)
