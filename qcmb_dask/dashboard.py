"""The live many-body page, ``/qcmb`` on the Dask dashboard's web server.

Per n-body level: calculations in all, running, done, failed, and the k-body-truncated interaction
energies as they arrive. Served by the scheduler itself (a module in Dask's
``distributed.scheduler.http.routes``), so it works wherever the dashboard does: the embedded cluster,
batch clusters and ``cluster="mpi"`` add it; for a scheduler you start yourself, add
``qcmb_dask.dashboard`` to that setting. The page polls ``/qcmb/data.json`` once a second.

Where the numbers come from: the run and the level results are scheduler metadata the client
publishes; fragment ends are the events fragments log (:mod:`qcmb_dask.events`); "running" is the
scheduler's own task states.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from distributed.http.utils import RequestHandler

from .events import FRAGMENT_TOPIC, METADATA_ROOT, fragment_records
from .graph import nbody_word


def snapshot(scheduler) -> Dict[str, Any]:
    """What the page shows, from the scheduler's state (runs on the scheduler's event loop)."""
    run = scheduler.get_metadata([METADATA_ROOT, "run"], default=None)
    if run is None:
        return {"run": None, "levels": []}
    records = fragment_records(scheduler.get_events(FRAGMENT_TOPIC), run["run"])
    levels = []
    for nbody_key, total in sorted(run["levels"].items(), key=lambda kv: int(kv[0])):
        nbody = int(nbody_key)
        mine = [r for r in records if r["nbody"] == nbody]
        # The scheduler counts tasks per state for each key prefix ("fragment-two-body"): no scan of all tasks.
        prefix = scheduler.task_prefixes.get(f"fragment-{nbody_word(nbody)}-body")
        running = prefix.states.get("processing", 0) if prefix is not None else 0
        result = scheduler.get_metadata([METADATA_ROOT, f"level-{nbody}"], default=None)
        levels.append(
            {
                "nbody": nbody,
                "total": total,
                "done": sum(1 for r in mine if r["ok"]),
                "failed": sum(1 for r in mine if not r["ok"]),
                "from_store": sum(1 for r in mine if r["from_store"]),
                "running": running,
                "interaction_energies": result["interaction_energies"] if result else None,
            }
        )
    return {"run": run["run"], "bsse_types": run["bsse_types"], "started": run["started"], "levels": levels}


class DataHandler(RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps(snapshot(self.server)))


class PageHandler(RequestHandler):
    def get(self):
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(PAGE)


#: read by distributed when the scheduler starts (distributed.scheduler.http.routes)
routes = [("qcmb", PageHandler, {}), ("qcmb/data.json", DataHandler, {})]


def live_page_link(client) -> Optional[str]:
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
    app = getattr(dask_scheduler, "http_application", None)
    rules = getattr(getattr(app, "wildcard_router", None), "rules", [])
    return any(getattr(rule, "target", None) is PageHandler for rule in rules)


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>qcmb_dask: many-body expansion</title>
<style>
 body { font-family: sans-serif; margin: 2em; color: #222; }
 table { border-collapse: collapse; } td, th { padding: .3em .8em; border-bottom: 1px solid #ddd; text-align: right; }
 th { background: #f4f4f4; } progress { width: 12em; } .failed { color: #b00; font-weight: bold; }
</style></head>
<body>
<h2>Many-body expansion</h2>
<p id="status">waiting for a run&hellip;</p>
<table id="levels"><thead><tr id="header"></tr></thead><tbody></tbody></table>
<p><a href="status">Dask dashboard</a> &middot; <a href="qcmb/data.json">data.json</a></p>
<script>
const KCAL = 627.5094740631;
function cell(tag, text, cls) {
  const c = document.createElement(tag); c.textContent = text; if (cls) c.className = cls; return c;
}
async function refresh() {
  let data;
  try { data = await (await fetch("qcmb/data.json", {cache: "no-store"})).json(); }
  catch (e) { document.getElementById("status").textContent = "scheduler unreachable (run finished?)"; return; }
  if (!data.run) return;
  const header = document.getElementById("header"); header.replaceChildren();
  for (const h of ["level", "calculations", "running", "done", "failed", "progress"]) header.appendChild(cell("th", h));
  for (const bt of data.bsse_types) header.appendChild(cell("th", bt.toUpperCase() + " IE (kcal/mol)"));
  const body = document.querySelector("#levels tbody"); body.replaceChildren();
  let done = 0, total = 0, failed = 0;
  for (const l of data.levels) {
    done += l.done; total += l.total; failed += l.failed;
    const row = document.createElement("tr"); row.dataset.nbody = l.nbody;
    row.appendChild(cell("td", l.nbody + "-body"));
    row.appendChild(cell("td", l.total, "total"));
    row.appendChild(cell("td", l.running, "running"));
    row.appendChild(cell("td", l.done, "done"));
    row.appendChild(cell("td", l.failed, l.failed ? "failed" : "nfailed"));
    const bar = document.createElement("progress"); bar.max = Math.max(l.total, 1); bar.value = l.done + l.failed;
    const td = document.createElement("td"); td.appendChild(bar); row.appendChild(td);
    for (const bt of data.bsse_types) {
      const e = l.interaction_energies ? l.interaction_energies[bt] : null;
      row.appendChild(cell("td", e === null || e === undefined ? "" : (e * KCAL).toFixed(4), "ie-" + bt));
    }
    body.appendChild(row);
  }
  const seconds = Math.round(Date.now() / 1000 - data.started);
  document.getElementById("status").textContent =
    `run ${data.run}: ${done + failed} of ${total} calculations finished` + (failed ? ` (${failed} failed)` : "") +
    `, ${seconds} s since it started`;
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""
