"""What the scheduler learns about a run, for the live page and the timeline, without fetching results.

- Each fragment, when it ends on a Dask worker, logs one scheduler event on the topic ``qcmb-fragment``:
  label, level, ok/failed, taken from the store or computed, start, stop, worker. A few hundred bytes,
  where fetching the fragment's result would move its gradient or Hessian.
- The client publishes the run (levels and their sizes) and each k-body result as it arrives as
  scheduler metadata under ``("qcmb", ...)``, so the page shows energies computed on workers.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

FRAGMENT_TOPIC = "qcmb-fragment"
METADATA_ROOT = "qcmb"


def fragment_ended(run: str, label: str, nbody: int, ok: bool, from_store: bool, start: float) -> None:
    """Log the end of a fragment on the scheduler; nothing outside a Dask worker (``"sync"``)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    worker.log_event(
        FRAGMENT_TOPIC,
        {
            "run": run,
            "label": label,
            "nbody": nbody,
            "ok": ok,
            "from_store": from_store,
            "start": start,
            "stop": time.time(),
            "worker": worker.name if worker.name is not None else worker.address,
        },
    )


def fragment_records(events: List, run: Optional[str] = None) -> List[Dict[str, Any]]:
    """The fragment records of one run from ``client.get_events(FRAGMENT_TOPIC)`` (or the scheduler's log)."""
    records = [msg for _, msg in events if isinstance(msg, dict) and (run is None or msg.get("run") == run)]
    # A fragment that ran twice (its worker was lost after it finished) counts once: its last end.
    latest = {}
    for record in records:
        latest[record["label"]] = record
    return list(latest.values())


def publish(client, key: str, value: Any) -> None:
    """Client side: put what the page shows on the scheduler (best effort: a page is never worth a failed run)."""
    try:
        client.set_metadata([METADATA_ROOT, key], value)
    except Exception:  # noqa: BLE001 - the scheduler may be closing; the run does not depend on this
        pass
