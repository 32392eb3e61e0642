"""The live many-body page, ``/qcmb`` on the Dask dashboard's web server.

Every run on the scheduler, newest first; for the chosen one (``/qcmb?run=<id>``, default the newest), per
n-body level: calculations in all, running, done, failed, and the k-body-truncated interaction energies as they
arrive; the n-body convergence plot (interaction energy against order, per BSSE treatment) and the fragments
per worker against time, drawn by the Bokeh the dashboard serves. Served by the scheduler itself (a module in
Dask's ``distributed.scheduler.http.routes``), so it works wherever the dashboard does: the embedded cluster,
batch clusters and ``cluster="mpi"`` add it; for a scheduler you start yourself, add
``qcmb_dask.diagnostics.page`` to that setting. The page polls ``/qcmb/data.json`` once a second.

Where the numbers come from: the runs and their level results are scheduler metadata the clients publish
(:mod:`qcmb_dask.diagnostics.run_events`); fragment counts, running fragments and the timeline are what the
scheduler plugin :mod:`qcmb_dask.diagnostics.runs_on_scheduler` kept as fragments ended.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from distributed.http.utils import RequestHandler

from qcmb_dask import compat
from qcmb_dask.diagnostics import runs_on_scheduler
from qcmb_dask.diagnostics.run_events import fragment_records, runs_published
from qcmb_dask.keys import FRAGMENT_TOPIC, fragment_prefix


def snapshot(scheduler, run: str | None = None) -> dict[str, Any]:
    """What the page shows, from the scheduler's state (runs on the scheduler's event loop): the runs, and the
    chosen one (``run``, default the newest) in detail."""
    published = {rid: value for rid, value in runs_published(scheduler).items() if "run" in value}
    plugin = runs_on_scheduler.of(scheduler)
    runs = sorted(published.values(), key=lambda value: -value["run"]["started"])
    listing = [_summary(value["run"], plugin) for value in runs]
    chosen = published.get(run) if run else (runs[0] if runs else None)
    if chosen is None:
        return {"run": None, "runs": listing, "levels": []}
    description = chosen["run"]
    tally = plugin.runs.get(description["run"]) if plugin is not None else None
    levels = []
    counts = _counts(scheduler, description["run"], tally)
    for nbody_key, total in sorted(description["levels"].items(), key=lambda kv: int(kv[0])):
        nbody = int(nbody_key)
        done, failed, from_store = counts.get(nbody, (0, 0, 0))
        result = chosen.get(f"level-{nbody}")
        levels.append(
            {
                "nbody": nbody,
                "total": total,
                "done": done,
                "failed": failed,
                "from_store": from_store,
                "running": _running(scheduler, tally, nbody),
                "interaction_energies": result["interaction_energies"] if result else None,
            }
        )
    return {
        "run": description["run"],
        "inputs": description.get("inputs", 1),
        "placement": description.get("placement"),
        "bsse_types": description["bsse_types"],
        "started": description["started"],
        "levels": levels,
        "runs": listing,
        "timeline": _timeline(tally, description["started"]),
        "events": tally.events if tally is not None else None,
        "screening": chosen.get("screening"),
    }


def _summary(description: dict, plugin) -> dict[str, Any]:
    tally = plugin.runs.get(description["run"]) if plugin is not None else None
    done = failed = 0
    if tally is not None:
        done = sum(c[0] for c in tally.counts.values())
        failed = sum(c[1] for c in tally.counts.values())
    total = sum(description["levels"].values())
    return {"run": description["run"], "started": description["started"], "inputs": description.get("inputs", 1),
            "total": total, "done": done, "failed": failed}  # fmt: skip


def _counts(scheduler, run: str, tally) -> dict[int, tuple[int, int, int]]:
    """nbody -> (done, failed, from store): the plugin's tally; on a scheduler without the plugin, the event
    log (which keeps only the latest events: right for small runs only)."""
    if tally is not None:
        return {nbody: tuple(c) for nbody, c in tally.counts.items()}
    counts: dict[int, list[int]] = {}
    for record in fragment_records(scheduler.get_events(FRAGMENT_TOPIC), run):
        tally_of_level = counts.setdefault(record["nbody"], [0, 0, 0])
        tally_of_level[0 if record["ok"] else 1] += 1
        tally_of_level[2] += bool(record["ok"] and record["from_store"])
    return {nbody: tuple(c) for nbody, c in counts.items()}


def _running(scheduler, tally, nbody: int) -> int:
    if tally is not None:
        return max(0, tally.running.get(nbody, 0))
    # The scheduler counts tasks per state for each key prefix ("fragment-two-body"): every run's together.
    return compat.tasks_processing(scheduler, fragment_prefix(nbody))


def _timeline(tally, started: float) -> dict[str, list]:
    """The latest fragment ends as bars: seconds since the run started, a row per worker."""
    columns: dict[str, list] = {"left": [], "right": [], "row": [], "nbody": [], "ok": []}
    if tally is None:
        return columns
    for start, stop, row, nbody, ok in tally.timeline:
        if start is None or stop is None:
            continue
        columns["left"].append(round(start - started, 3))
        columns["right"].append(round(stop - started, 3))
        columns["row"].append(row)
        columns["nbody"].append(nbody)
        columns["ok"].append(ok)
    return columns


def plots(scheduler, run: str | None) -> dict[str, Any]:
    """The page's two Bokeh figures, empty (the page fills them from data.json), as ``bokeh.embed.json_item``."""
    from bokeh.embed import json_item
    from bokeh.models import ColumnDataSource
    from bokeh.palettes import Category10_10
    from bokeh.plotting import figure

    data = snapshot(scheduler, run)
    convergence = figure(
        height=280,
        width=520,
        title="n-body convergence",
        x_axis_label="n-body order",
        y_axis_label="interaction energy (kcal/mol)",
        tools="pan,box_zoom,reset,hover",
        tooltips=[("order", "@x"), ("IE (kcal/mol)", "@y{0.0000}")],
    )
    for color, bsse_type in zip(Category10_10, data.get("bsse_types", [])):
        source = ColumnDataSource({"x": [], "y": []}, name=f"convergence-{bsse_type}")
        convergence.line("x", "y", source=source, color=color, legend_label=bsse_type.upper())
        convergence.scatter("x", "y", source=source, color=color, size=7, legend_label=bsse_type.upper())
    convergence.xaxis.ticker.desired_num_ticks = 4
    timeline = figure(
        height=280,
        width=520,
        title="fragments per worker",
        x_axis_label="seconds since the run started",
        y_axis_label="worker",
        tools="pan,box_zoom,reset",
    )
    source = ColumnDataSource({"left": [], "right": [], "bottom": [], "top": [], "color": []}, name="timeline")
    timeline.quad(left="left", right="right", bottom="bottom", top="top", color="color", source=source)
    return {"run": data["run"], "convergence": json_item(convergence), "timeline": json_item(timeline)}


class DataHandler(RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps(snapshot(self.server, self.get_argument("run", None))))


class PlotsHandler(RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps(plots(self.server, self.get_argument("run", None))))


class PageHandler(RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(page_html())


@functools.lru_cache(maxsize=1)
def page_html() -> str:
    """The page (``templates/qcmb.html``), with QCElemental's Hartree-to-kcal/mol factor filled in."""
    from qcmb_dask.qcmanybody_adapter import hartree_to_kcal

    template = (Path(__file__).parent / "templates" / "qcmb.html").read_text()
    return template.replace("{kcal_per_hartree}", repr(hartree_to_kcal()))


#: read by distributed when the scheduler starts (distributed.scheduler.http.routes)
routes = [("qcmb", PageHandler, {}), ("qcmb/data.json", DataHandler, {}), ("qcmb/plots.json", PlotsHandler, {})]


def live_page_link(client) -> str | None:
    """The page's address, where the client's scheduler serves it; None where it does not."""
    link = getattr(client, "dashboard_link", None)
    if not link:
        return None
    try:
        served = client.run_on_scheduler(_serves_page)
    except Exception:  # noqa: BLE001 - an old or remote scheduler without qcmb_dask: no page, no harm
        return None
    return link.rsplit("/", 1)[0] + "/qcmb" if served else None


def _serves_page(dask_scheduler=None) -> bool:
    return compat.serves_route(dask_scheduler, PageHandler)
