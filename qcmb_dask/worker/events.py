"""The worker's half of the run's events: each fragment's end, logged on the scheduler.

Each fragment, when it ends on a Dask worker, records label, level, ok/failed, taken from the store or
computed, start, stop and worker; each worker sends what piled up as one scheduler event on the topic
:data:`qcmb_dask.keys.FRAGMENT_TOPIC` every half second. A few hundred bytes per fragment, where fetching
the fragment's result would move its gradient or Hessian. :mod:`qcmb_dask.diagnostics.run_events` reads them.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from qcmb_dask.keys import FRAGMENT_TOPIC

#: a worker sends the fragment ends it has seen at most this often (``qcmb_dask.fragment-event-interval``, read
#: on the worker): a message per fragment costs the scheduler more than fragments of a few milliseconds take
#: (``benchmarks/README.md``, overhead), batched it costs nothing
FLUSH_SECONDS = 0.5
_pending: list[dict[str, Any]] = []
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
        interval = flush_seconds()
        worker.loop.add_callback(lambda: worker.loop.call_later(interval, _flush, worker))


def flush_seconds() -> float:
    import dask
    from dask.utils import parse_timedelta

    return parse_timedelta(dask.config.get("qcmb_dask.fragment-event-interval", FLUSH_SECONDS), default="s")


def _flush(worker) -> None:
    with _pending_lock:
        batch = list(_pending)
        _pending.clear()
    if batch:
        worker.log_event(FRAGMENT_TOPIC, batch)
