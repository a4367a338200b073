"""The drift report as one self-contained HTML page: a summary table of every column and,
for each drifted one, a reference-vs-current chart embedded as a base64 PNG.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ranking.checks.limits import SEVERITY
from ranking.monitoring.drift import (
    DriftReport,
    FeatureDrift,
    category_shares,
    column_of,
    finite_values,
)

_COLOURS = {"ok": "#e6f4ea", "warn": "#fff4ce", "fail": "#fde2e1", "not enough data": "#eeeeee"}
_REF_COLOUR, _CUR_COLOUR = "#4c72b0", "#dd8452"


def _png_base64(fig: Figure) -> str:
    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _numeric_figure(name: str, ref: np.ndarray, cur: np.ndarray, res: FeatureDrift) -> Figure:
    """Reference vs current histogram (share of non-null values) on common bins."""
    fig = Figure(figsize=(6.4, 3.4), dpi=90)
    ax = fig.add_subplot()
    both = np.concatenate([ref, cur])
    if both.size:
        edges = np.histogram_bin_edges(both, bins=30)
        for values, label, colour in (
            (ref, "reference", _REF_COLOUR),
            (cur, "current", _CUR_COLOUR),
        ):
            if values.size:
                weights = np.full(values.size, 1.0 / values.size)
                ax.hist(values, bins=edges, weights=weights, alpha=0.55, label=label, color=colour)
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no values in either sample", ha="center", transform=ax.transAxes)
    ax.set_ylabel("share of non-null values")
    ax.set_title(f"{name}: {res.status} ({_nulls_text(res)})", fontsize=10)
    fig.tight_layout()
    return fig


def _categorical_figure(name: str, ref: pd.Series, cur: pd.Series, res: FeatureDrift) -> Figure:
    """Reference vs current category shares, side by side (the 15 most frequent)."""
    cats, ref_counts, cur_counts = category_shares(ref, cur)
    top = 15
    ref_share = ref_counts / max(ref_counts.sum(), 1)
    cur_share = cur_counts / max(cur_counts.sum(), 1)
    labels = cats[:top]
    r, c = list(ref_share[:top]), list(cur_share[:top])
    if len(cats) > top:
        labels.append("(other)")
        r.append(float(ref_share[top:].sum()))
        c.append(float(cur_share[top:].sum()))
    fig = Figure(figsize=(6.4, 3.6), dpi=90)
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    ax.bar(x - 0.2, r, width=0.4, label="reference", color=_REF_COLOUR)
    ax.bar(x + 0.2, c, width=0.4, label="current", color=_CUR_COLOUR)
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("share of non-null values")
    ax.legend()
    ax.set_title(f"{name}: {res.status} ({_nulls_text(res)})", fontsize=10)
    fig.tight_layout()
    return fig


def _nulls_text(res: FeatureDrift) -> str:
    if res.null_rate_ref is None or res.null_rate_cur is None:
        return "null share n/a"
    return f"null share {res.null_rate_ref:.1%} -> {res.null_rate_cur:.1%}"


def _fmt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


#: Where the link to the report's MLflow run goes once the run exists (``link_run``).
RUN_LINK_SLOT = "<!-- mlflow run -->"


def link_run(path: Path, ui_url: str, experiment_id: str, run_id: str) -> None:
    """Put the link to the MLflow run that logged the report into its page."""
    href = html.escape(f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}")
    line = f'<p>Logged in MLflow as run <a href="{href}">{html.escape(run_id)}</a>.</p>'
    path.write_text(path.read_text(encoding="utf-8").replace(RUN_LINK_SLOT, line, 1),
                    encoding="utf-8")  # fmt: skip


def write_html_report(
    report: DriftReport,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    path: Path | str,
    title: str = "Feature drift report",
    rule: str = "",
) -> Path:
    """Write ``report`` as one self-contained HTML file and return its path.

    The page has a summary table of every column and, for each drifted column (``warn``
    or ``fail``), one reference-vs-current chart embedded as a base64 PNG ``<img>``:
    a histogram for numeric and score columns, a bar chart of category shares for
    categorical ones. Nothing is fetched from elsewhere when the page is opened.
    """
    path = Path(path)
    counts = report.counts()
    head = ["feature", "kind", "status", "rows ref", "rows cur", "PSI", "KS p", "JS",
            "chi2 p", "null ref", "null cur", "reason"]  # fmt: skip
    rows = []
    for f in sorted(report.features, key=lambda f: (-SEVERITY[f.status], f.name)):  # worst first
        cells = [f.name, f.kind, f.status, f.n_ref, f.n_cur, f.psi, f.ks_pvalue, f.js,
                 f.chi2_pvalue, f.null_rate_ref, f.null_rate_cur, f.reason]  # fmt: skip
        tds = "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in cells)
        rows.append(f'<tr style="background:{_COLOURS[f.status]}">{tds}</tr>')
    plots = []
    for f in report.drifted:
        ref = column_of(reference, f.name)
        cur = column_of(current, f.name)
        if f.kind == "categorical":
            fig = _categorical_figure(f.name, ref, cur, f)
        else:
            fig = _numeric_figure(f.name, finite_values(ref), finite_values(cur), f)
        alt = html.escape(f"{f.name}: reference vs current")
        plots.append(
            f'<figure><img alt="{alt}" src="data:image/png;base64,{_png_base64(fig)}">'
            f"<figcaption>{html.escape(f.name)}: {html.escape(f.reason)}</figcaption></figure>"
        )
    verdict = "BREACHED" if report.breached else "not breached"
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }}
figure {{ display: inline-block; margin: 0.5em; }}
figcaption {{ font-size: 0.8em; max-width: 576px; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p><strong>{verdict}</strong>: {len(report.features)} columns checked ({summary}).</p>
<p>{html.escape(rule)}</p>
{RUN_LINK_SLOT}
<table><thead><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<h2>Drifted columns ({len(plots)})</h2>
{chr(10).join(plots) if plots else "<p>None.</p>"}
</body></html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
