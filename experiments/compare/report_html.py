"""The comparison as one self-contained HTML page: table, validation curves, sample images and videos, all inline."""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from experiments.compare.table import ComparisonTable, Variant, reading_guide, settings_differences, table_cells
from rendering.frame_strip import STRIP_SUFFIX

TABLE_BACKGROUND = "#e6f0fa"  # the comparison table's own colour (a rendering test looks for it)
IMAGE_MAX_WIDTH = 1000

STYLE = f"""
body {{ font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; margin: 24px; color: #1b1b1b; background: #fff; }}
h1 {{ font-size: 22px; margin: 0 0 6px 0; }}
h2 {{ font-size: 17px; margin: 28px 0 8px 0; }}
p.meta, ul.notes {{ color: #444; font-size: 13px; }}
table {{ border-collapse: collapse; font-size: 13px; }}
div.wide {{ overflow-x: auto; }}
th, td {{ padding: 6px 10px; border: 1px solid #c5d3e0; text-align: right; white-space: nowrap; }}
th:first-child, td:first-child {{ text-align: left; }}
table.comparison {{ background: {TABLE_BACKGROUND}; }}
table.comparison th {{ background: #1f3a5f; color: #fff; }}
table.comparison td.best {{ font-weight: bold; }}
td.better {{ color: #1b7f3b; }}
td.worse {{ color: #b3261e; }}
table.plain th {{ background: #f0f0f0; }}
figure {{ display: inline-block; margin: 8px 16px 8px 0; vertical-align: top; }}
figcaption {{ font-size: 12px; color: #444; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
video {{ width: 320px; background: #000; }}
div.videos figure img {{ width: 320px; display: block; margin-top: 4px; }}
"""


def _png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def strip_beside(video: Path) -> Path | None:
    """The frame strip `dtl generate video` writes beside its MP4 (<stem>_strip.png), if there is one."""
    strip = video.with_name(video.stem + STRIP_SUFFIX)
    return strip if strip.is_file() else None


def video_figure(label: str, video: Path) -> str:
    """A playable MP4 (with its sound) and, where there is one, its frame strip, inline."""
    source = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode("ascii")
    strip = strip_beside(video)
    still = f'<img alt="{html.escape(label)}: frames" src="{_png_data_uri(image_png(strip))}">' if strip else ""
    return (f'<figure><video controls preload="metadata" src="{source}"></video>{still}'
            f"<figcaption>{html.escape(label)}: {html.escape(video.name)}</figcaption></figure>")


def curve_metric(metric: str, table: ComparisonTable) -> str | None:
    """The curve to draw for a metric: its validation twin for a test/* metric, else itself, if runs logged it
    at two or more steps."""
    candidates = [f"val/{metric.split('/', 1)[1]}", metric] if metric.startswith("test/") else [metric]
    for name in candidates:
        if any(name in r.curves and len(r.curves[name].steps) > 1 for v in table.variants for r in v.runs):
            return name
    return None


def variant_curve(variant: Variant, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Steps, mean over the variant's runs at each step, and std (0 where one run has the step)."""
    curves = [r.curves[name] for r in variant.runs if name in r.curves]
    if not curves:
        return None
    steps = np.unique(np.concatenate([c.steps for c in curves]))
    means, stds = [], []
    for step in steps:
        values = [c.values[c.steps == step][0] for c in curves if step in c.steps]
        means.append(np.mean(values))
        stds.append(np.std(values, ddof=1) if len(values) > 1 else 0.0)
    return steps, np.array(means), np.array(stds)


def curve_png(table: ComparisonTable, name: str) -> bytes:
    """One line per variant (mean over seeds, shaded ± std) of metric `name` over training steps."""
    fig = Figure(figsize=(6.2, 3.2), dpi=100)
    ax = fig.subplots()
    for index, variant in enumerate(table.variants):
        curve = variant_curve(variant, name)
        if curve is None:
            continue
        steps, mean, std = curve
        colour = f"C{index % 10}"
        ax.plot(steps, mean, color=colour, marker="o" if len(steps) <= 20 else None, markersize=3,
                label=f"{variant.label} (n={len(variant.runs)})")
        if np.any(std > 0):
            ax.fill_between(steps, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
    ax.set_xlabel("step")
    ax.set_ylabel(name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.18), frameon=False)  # below: labels are long
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def image_png(path: Path) -> bytes:
    """An image file as PNG, no wider than IMAGE_MAX_WIDTH."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.width > IMAGE_MAX_WIDTH:
            image = image.resize((IMAGE_MAX_WIDTH, round(image.height * IMAGE_MAX_WIDTH / image.width)),
                                 Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()


def _table_html(header: list[str], rows: list[list[tuple[str, str]]], css_class: str) -> str:
    """An HTML table of (text, css class) cells."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f'<td class="{kind}">{html.escape(text)}</td>' if kind else
                                    f"<td>{html.escape(text)}</td>" for text, kind in row) + "</tr>" for row in rows)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _plain(rows: list[list[str]]) -> list[list[tuple[str, str]]]:
    return [[(text, "") for text in row] for row in rows]


def _sample_figures(table: ComparisonTable, max_images: int) -> list[str]:
    """The newest image of each variant's first run that saved any, up to `max_images`."""
    figures = []
    for variant in table.variants:
        run = next((r for r in variant.runs if r.images), None)
        if run is None or len(figures) >= max_images:
            continue
        path = run.images[-1]
        caption = f"{variant.label}: {run.name}, {path.name}"
        figures.append(_figure(image_png(path), caption, caption))
    return figures


def _figure(png: bytes, alt: str, caption: str) -> str:
    return (f'<figure><img alt="{html.escape(alt)}" src="{_png_data_uri(png)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render_report(table: ComparisonTable, max_images: int = 6, title: str = "Run comparison",
                  videos: list[tuple[str, Path]] = ()) -> str:
    """The whole report as one HTML document with no outside references; `videos` (label, MP4) side by side."""
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="meta">Generated {time.strftime("%Y-%m-%d %H:%M")}. {html.escape(reading_guide(table))}</p>',
             f'<div class="wide">{_table_html(*table_cells(table), "comparison")}</div>']
    if table.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in table.notes) + "</ul>")

    if videos:
        parts += ["<h2>Videos</h2>", '<div class="videos">'
                  + "".join(video_figure(label, path) for label, path in videos) + "</div>"]
    parts.append("<h2>Curves</h2>")
    drawn = set()
    for metric in table.metrics:
        name = curve_metric(metric, table)
        if name is None:
            parts.append(f'<p class="meta">{html.escape(metric)}: no curve (logged at fewer than two steps).</p>')
        elif name not in drawn:
            drawn.add(name)
            parts.append(_figure(curve_png(table, name), f"{name} over steps",
                                 f"{name} over training steps, mean ± std over seeds"))

    figures = _sample_figures(table, max_images)
    if figures:
        parts += ["<h2>Samples</h2>", *figures]

    diff_header, diff_rows, more = settings_differences(table.variants)
    if diff_rows:
        parts += ["<h2>Settings that differ between variants</h2>",
                  _table_html(diff_header, _plain(diff_rows), "plain")]
        if more:
            parts.append(f'<p class="meta">and {more} more</p>')
    parts += ["<h2>Runs</h2>", _table_html(
        ["variant", "run", "seed", "source", "location"],
        _plain([[v.label, r.name, str(r.seed), r.source, r.location] for v in table.variants for r in v.runs]),
        "plain")]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
