"""What the scheduler learns about a run, for the live page and the timeline, without fetching results.

- Each fragment, when it ends on a Dask worker, records label, level, ok/failed, taken from the store or
  computed, start, stop and worker; each worker sends what piled up as one scheduler event on the topic
  ``qcmb-fragment`` every half second. A few hundred bytes per fragment, where fetching the fragment's
  result would move its gradient or Hessian.
- The client publishes the run (levels and their sizes) and each k-body result as it arrives as
  scheduler metadata under ``("qcmb", ...)``, so the page shows energies computed on workers.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional

FRAGMENT_TOPIC = "qcmb-fragment"
METADATA_ROOT = "qcmb"


#: a worker sends the fragment ends it has seen at most this often: one message per fragment would cost
#: about 1.5 ms of wall time per fragment on 2 cores (benchmarks/overhead.py), batched it costs nothing
FLUSH_SECONDS = 0.5
_pending: List[Dict[str, Any]] = []
_pending_lock = threading.Lock()


def fragment_ended(run: str, label: str, nbody: int, ok: bool, from_store: bool, start: float) -> None:
    """Log the end of a fragment on the scheduler (batched per worker); nothing outside a Dask worker."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return
    record = {
        "run": run,
        "label": label,
        "nbody": nbody,
        "ok": ok,
        "from_store": from_store,
        "start": start,
        "stop": time.time(),
        "worker": worker.name if worker.name is not None else worker.address,
    }
    with _pending_lock:
        _pending.append(record)
        first = len(_pending) == 1
    if first:  # the fragment runs in a worker thread; the loop sends, a little later, all that piled up
        worker.loop.add_callback(lambda: worker.loop.call_later(FLUSH_SECONDS, _flush, worker))


def _flush(worker) -> None:
    with _pending_lock:
        batch = list(_pending)
        _pending.clear()
    if batch:
        worker.log_event(FRAGMENT_TOPIC, batch)


def fragment_records(events: List, run: Optional[str] = None) -> List[Dict[str, Any]]:
    """The fragment records of one run from ``client.get_events(FRAGMENT_TOPIC)`` (or the scheduler's log)."""
    records = [record for _, batch in events for record in unbatch(batch) if run is None or record.get("run") == run]
    # A fragment that ran twice (its worker was lost after it finished) counts once: its last end.
    latest = {}
    for record in records:
        latest[record["label"]] = record
    return list(latest.values())


def unbatch(batch: Any) -> List[Dict[str, Any]]:
    """The records of one event (a worker's batch)."""
    # a list sent by the worker arrives as a tuple (msgpack)
    return [record for record in batch if isinstance(record, dict)] if isinstance(batch, (list, tuple)) else []


def publish(client, key: str, value: Any) -> None:
    """Client side: put what the page shows on the scheduler (best effort: a page is never worth a failed run)."""
    try:
        client.set_metadata([METADATA_ROOT, key], value)
    except Exception:  # noqa: BLE001 - the scheduler may be closing; the run does not depend on this
        pass
