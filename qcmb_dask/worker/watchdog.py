"""``timeout_per_task``: stop a fragment that runs too long by ending its worker process.

A thread cannot be stopped in Python, and a hung SCF sits in C code that ignores signals to threads.
What frees the core is ending the process: the worker's nanny starts a fresh one, the scheduler
sees the worker lost and runs the fragment again elsewhere, at most ``allowed-failures`` times
(Dask's own accounting for lost workers), then reports it as ``KilledWorker``. Before exiting, the
worker logs a ``qcmb-dask-timeout`` event, which is how the client tells a timeout from a crash.

Only on a worker run by a nanny: elsewhere (the in-process executor, ``processes=False`` clusters)
ending the process would end the user's session, so the client refuses the setting there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time

from qcmb_dask.keys import TIMEOUT_EVENT

logger = logging.getLogger("qcmb_dask")

#: Exit status of a worker ended by the watchdog (EX_TEMPFAIL: the nanny restarts it).
EXIT_STATUS = 75
#: Time for the event to reach the scheduler before the process ends.
_FLUSH_SECONDS = 1.0


@contextlib.contextmanager
def limit(timeout: float | None, label: str, run: str = ""):
    """Run the block; if it takes longer than ``timeout`` seconds on a nanny-managed worker, end the worker."""
    worker = _nanny_worker() if timeout else None
    if worker is None:
        yield
        return
    timer = threading.Timer(timeout, _stop_worker, args=(worker, label, timeout, run))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _nanny_worker():
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    return worker if getattr(worker, "nanny", None) else None


def _stop_worker(worker, label: str, timeout: float, run: str) -> None:
    message = f"qcmb_dask: fragment {label} ran longer than timeout_per_task={timeout:g} s; ending this worker"
    print(message, file=sys.stderr, flush=True)
    logger.error(message)
    with contextlib.suppress(Exception):
        # log_event sends on the worker's event loop: hand it over rather than call from this thread.
        worker.loop.add_callback(worker.log_event, TIMEOUT_EVENT, {"label": label, "timeout": timeout, "run": run})
        time.sleep(_FLUSH_SECONDS)
    os._exit(EXIT_STATUS)
