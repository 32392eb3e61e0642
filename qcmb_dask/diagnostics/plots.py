"""Bokeh plots (the dashboard's own library): n-body convergence, the fragment timeline, and an HTML report.

    qcmb_dask.plots.convergence(result)            # interaction energy vs n-body order, per BSSE type
    qcmb_dask.plots.timeline(qcmb_dask.timeline()) # each fragment's run, by worker, colored by level
    qcmb_dask.plots.report(result, qcmb_dask.timeline(), "report.html")

In Jupyter, ``bokeh.io.output_notebook()`` then ``bokeh.io.show(figure)`` draws them inline.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

#: one color per n-body level (Bokeh's Category10)
LEVEL_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]


def convergence_data(result) -> dict[str, list[tuple]]:
    """BSSE type -> [(n, interaction energy through n-body in kcal/mol)], from a ManyBodyResult or PartialResult."""
    from qcmb_dask.diagnostics.results import table

    series: dict[str, list[tuple]] = {}
    for row in table(result):
        if row["interaction_energy"] is not None:
            series.setdefault(row["bsse"], []).append((row["nbody"], row["interaction_energy_kcal"]))
    return series


def convergence(result, title: str = "Many-body convergence"):
    """Interaction energy (kcal/mol) through each n-body order, one line per BSSE treatment."""
    from bokeh.models import HoverTool
    from bokeh.plotting import figure

    fig = figure(
        title=title,
        x_axis_label="n-body order",
        y_axis_label="interaction energy (kcal/mol)",
        width=600,
        height=380,
        tools="pan,wheel_zoom,box_zoom,reset,save",
    )
    for i, (bt, points) in enumerate(convergence_data(result).items()):
        xs, ys = zip(*points)
        color = LEVEL_COLORS[i % len(LEVEL_COLORS)]
        fig.line(list(xs), list(ys), legend_label=bt.upper(), line_width=2, color=color)
        fig.scatter(list(xs), list(ys), legend_label=bt.upper(), size=8, color=color)
    fig.xaxis.ticker = sorted({x for points in convergence_data(result).values() for x, _ in points}) or [1]
    fig.add_tools(HoverTool(tooltips=[("n-body", "@x"), ("IE (kcal/mol)", "@y{0.0000}")]))
    fig.legend.location = "top_right"
    return fig


def timeline(records: Sequence[dict[str, Any]], title: str = "Fragment timeline"):
    """One bar per calculation from its start to its end, a row per worker, colored by n-body level."""
    from bokeh.models import ColumnDataSource, HoverTool
    from bokeh.plotting import figure

    records = [r for r in records if r.get("start") is not None]
    origin = min((r["start"] for r in records), default=0.0)
    workers = sorted({str(r.get("worker")) for r in records})
    data = {
        "worker": [str(r.get("worker")) for r in records],
        "left": [r["start"] - origin for r in records],
        "right": [r["stop"] - origin for r in records],
        "seconds": [r["stop"] - r["start"] for r in records],
        "label": [r["label"] for r in records],
        "level": [f"{r['nbody']}-body" for r in records],
        "color": [LEVEL_COLORS[(r["nbody"] - 1) % len(LEVEL_COLORS)] for r in records],
        "how": [("failed" if not r["ok"] else "from the store" if r["from_store"] else "computed") for r in records],
    }
    fig = figure(
        title=title,
        y_range=workers or ["(none)"],
        x_axis_label="seconds since the first fragment started",
        y_axis_label="worker",
        width=800,
        height=max(200, 40 * len(workers) + 120),
        tools="xpan,xwheel_zoom,reset,save",
    )
    fig.hbar(
        y="worker",
        left="left",
        right="right",
        height=0.7,
        color="color",
        legend_field="level",
        source=ColumnDataSource(data),
    )
    fig.add_tools(
        HoverTool(tooltips=[("fragment", "@label"), ("level", "@level"), ("seconds", "@seconds{0.00}"), ("", "@how")])
    )
    return fig


def report(result, records: Sequence[dict[str, Any]] | None, path: str, title: str = "qcmb_dask report") -> str:
    """A standalone HTML file: the summary table, the convergence plot and (given records) the timeline."""
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import Div
    from bokeh.resources import CDN

    parts = [Div(text=f"<h2>{html.escape(title)}</h2>{summary_html(result)}"), convergence(result)]
    if records:
        parts.append(timeline(records))
    frequency_table = frequencies_html(result)
    if frequency_table:
        parts.append(Div(text=frequency_table))
    with open(path, "w") as f:
        f.write(file_html(column(*parts), CDN, title))
    return path


def frequencies_html(result) -> str:
    """The harmonic frequencies of a Hessian result as an HTML table; empty for other drivers."""
    from qcmb_dask.vibrations import frequencies

    try:
        analysis = frequencies(result)
    except ValueError:  # not a Hessian (or a partial result)
        return ""
    rows = "".join(
        f"<tr><td>{n}</td><td>{w:.2f}{' (imaginary)' if w < 0 else ''}</td></tr>"
        for n, w in enumerate(analysis.wavenumbers, start=1)
    )
    return (
        "<h3>Harmonic frequencies of the many-body Hessian</h3>"
        "<table border='1' cellpadding='4' style='border-collapse:collapse'>"
        f"<tr><th>mode</th><th>wavenumber (cm<sup>-1</sup>)</th></tr>{rows}</table>"
    )


def summary_rows(result) -> list[tuple]:
    """(BSSE type, n-body, IE in Eh, IE in kcal/mol) for every truncation in the result."""
    from qcmb_dask.diagnostics.results import table

    return [
        (row["bsse"].upper(), row["nbody"], row["interaction_energy"], row["interaction_energy_kcal"])
        for row in table(result)
        if row["interaction_energy"] is not None
    ]


def summary_html(result) -> str:
    body = "".join(
        f"<tr><td>{bt}</td><td>{n}</td><td>{eh:.10f}</td><td>{kcal:.4f}</td></tr>"
        for bt, n, eh, kcal in summary_rows(result)
    )
    return (
        "<table border='1' cellpadding='4' style='border-collapse:collapse'>"
        "<tr><th>BSSE</th><th>through n-body</th><th>IE (Eh)</th><th>IE (kcal/mol)</th></tr>"
        f"{body}</table>"
    )
