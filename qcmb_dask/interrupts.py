"""SIGTERM and SIGHUP take the Ctrl-C path while ``compute`` runs.

Python ends a process on SIGTERM or SIGHUP without running ``finally`` blocks or ``atexit``: batch jobs
submitted for workers would stay queued until they start and time out, and the embedded cluster's processes
would be orphaned. While a run is under way they raise :class:`~qcmb_dask.errors.Terminated` (a
``KeyboardInterrupt``) in the main thread instead, which every clean-up path already handles.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from qcmb_dask.errors import Terminated

#: the signals a batch system or a closing terminal sends before it kills
HANDLED = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


def _raise_terminated(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def as_interrupts() -> Iterator[None]:
    """Within: SIGTERM and SIGHUP raise :class:`Terminated`. A signal whose handler is not the default (the
    user's own, or ignored as under ``nohup``) is left alone; outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    replaced = {}
    for signum in HANDLED:
        if signal.getsignal(signum) is signal.SIG_DFL:
            replaced[signum] = signal.signal(signum, _raise_terminated)
    try:
        yield
    finally:
        for signum, previous in replaced.items():
            signal.signal(signum, previous)
