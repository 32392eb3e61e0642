"""The live many-body page, ``/qcmb`` on the Dask dashboard's web server.

Per n-body level: calculations in all, running, done, failed, and the k-body-truncated interaction
energies as they arrive. Served by the scheduler itself (a module in Dask's
``distributed.scheduler.http.routes``), so it works wherever the dashboard does: the embedded cluster,
batch clusters and ``cluster="mpi"`` add it; for a scheduler you start yourself, add
``qcmb_dask.diagnostics.page`` to that setting. The page polls ``/qcmb/data.json`` once a second.

Where the numbers come from: the run and the level results are scheduler metadata the client
publishes; fragment ends are the events fragments log (:mod:`qcmb_dask.worker.events`); "running" is the
scheduler's own task states.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from distributed.http.utils import RequestHandler

from qcmb_dask import compat
from qcmb_dask.diagnostics.run_events import fragment_records
from qcmb_dask.keys import FRAGMENT_TOPIC, METADATA_ROOT, fragment_prefix


def snapshot(scheduler) -> dict[str, Any]:
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
        running = compat.tasks_processing(scheduler, fragment_prefix(nbody))
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
        self.write(page_html())


@functools.lru_cache(maxsize=1)
def page_html() -> str:
    """The page (``templates/qcmb.html``), with QCElemental's Hartree-to-kcal/mol factor filled in."""
    from qcmb_dask.qcmanybody_adapter import hartree_to_kcal

    template = (Path(__file__).parent / "templates" / "qcmb.html").read_text()
    return template.replace("{kcal_per_hartree}", repr(hartree_to_kcal()))


#: read by distributed when the scheduler starts (distributed.scheduler.http.routes)
routes = [("qcmb", PageHandler, {}), ("qcmb/data.json", DataHandler, {})]


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
