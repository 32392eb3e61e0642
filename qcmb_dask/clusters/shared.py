"""The embedded cluster of this process: started once, reused by every ``compute(cluster=None)``, closed after.

A notebook that calls ``compute`` ten times, a loop over geometries and an optimization pay for starting
workers once. The cluster is closed by :func:`qcmb_dask.close`, after ``qcmb_dask.local.idle-timeout`` seconds
with no run, and at interpreter exit. ``cluster="local"`` still starts a call's own cluster
(:mod:`qcmb_dask.clusters.local`).

What starting it cost on this machine is measured and kept (:func:`startup_seconds`): ``cluster=None`` runs a
plan in this process instead when starting workers would cost more than they save (:mod:`.auto`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading
import time
from pathlib import Path

from qcmb_dask.clusters import resources as res
from qcmb_dask.clusters import security
from qcmb_dask.clusters.base import ClientSetup, scheduler_settings
from qcmb_dask.options import setting

#: Seconds assumed for starting workers on a machine where it was never measured.
DEFAULT_STARTUP_SECONDS = 4.0
STARTUP_FILE = "embedded-cluster.json"


class SharedCluster:
    """One LocalCluster for the process, handed to one run at a time (runs of several threads queue)."""

    def __init__(self):
        self._lock = threading.RLock()
        self._in_use = threading.Lock()
        self._cluster = None
        self._client = None
        self._shape = None
        self._idle_timer = None

    def client(self):
        """The running client, or None."""
        return self._client

    @contextlib.contextmanager
    def use(self, resources: res.Resources, setup: ClientSetup | None = None, measured_in=None):
        """The client of a cluster of ``resources.n_workers`` single-thread workers, started if none runs (or one
        of another size runs), ``setup`` called on it (the run's harnesses, its programs imported on the
        workers: part of what starting costs). Yields ``(client, started)``: the seconds this call spent
        starting it (0 for a reused one). ``measured_in``: a store directory where the start-up time is kept."""
        with self._in_use:  # one run at a time: each run sizes fragments for every worker
            with self._lock:
                self._cancel_idle_timer()
                begin, started = time.perf_counter(), 0.0
                shape = _shape(resources)
                fresh = self._client is None or self._shape != shape
                if fresh:  # none yet, or one of another size or other settings: the user's settings win
                    self._close()
                    self._start(resources, shape)
                if setup is not None:
                    setup(self._client)
                if fresh:
                    started = time.perf_counter() - begin
                    record_startup(measured_in, started, resources.n_workers)
                client = self._client
            try:
                yield client, started
            finally:
                self._start_idle_timer()

    def close(self) -> None:
        with self._lock:
            self._cancel_idle_timer()
            self._close()

    def _start(self, resources: res.Resources, shape: str) -> None:
        import dask
        from distributed import Client, LocalCluster

        # One thread per worker process: PySCF's thread count is process-wide, so concurrency comes from
        # processes and each fragment gets threads_per_task cores of its own.
        tls = security.local_cluster_options()
        with dask.config.set(scheduler_settings()):
            self._cluster = LocalCluster(
                n_workers=resources.n_workers,
                threads_per_worker=1,
                processes=True,
                **tls,
                dashboard_address=setting("local.dashboard-address"),
                silence_logs=setting("local.silence-logs"),
            )
        self._client = Client(self._cluster, set_as_default=False)
        self._shape = shape
        # atexit runs the latest registered first: after distributed's own (it closes every cluster at exit,
        # registered when LocalCluster was first imported), ours would find the workers gone with results in
        # them, and distributed would warn that it "lost computed tasks". Registered again, ours closes first.
        atexit.unregister(self.close)
        atexit.register(self.close)

    def _close(self) -> None:
        client, cluster = self._client, self._cluster
        self._client = self._cluster = self._shape = None
        with contextlib.suppress(Exception):  # closing at exit or after an error: nothing to save
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()

    def _start_idle_timer(self) -> None:
        idle = setting("local.idle-timeout")
        with self._lock:
            if idle is None or self._client is None:
                return
            self._idle_timer = threading.Timer(float(idle), self.close)
            self._idle_timer.daemon = True
            self._idle_timer.start()

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None


def _shape(resources: res.Resources) -> str:
    """What a cluster is started with: a running one of another shape is replaced, not reused."""
    started_with = {
        "n_workers": resources.n_workers,
        "scheduler": scheduler_settings(),
        "dashboard": setting("local.dashboard-address"),
        "logs": setting("local.silence-logs"),
    }
    return json.dumps(started_with, sort_keys=True, default=str)


SHARED = SharedCluster()
atexit.register(SHARED.close)


def close() -> None:
    """Close the embedded cluster ``compute`` keeps running in this process, if there is one."""
    SHARED.close()


def startup_seconds(store_root) -> float:
    """What starting the embedded cluster took on this machine (the latest measurement kept in the store),
    ``qcmb_dask.local.startup-seconds`` where that is set, else :data:`DEFAULT_STARTUP_SECONDS`."""
    configured = setting("local.startup-seconds")
    if configured is not None:
        return float(configured)
    if store_root is not None:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            return float(json.loads((Path(store_root) / STARTUP_FILE).read_text())["seconds"])
    return DEFAULT_STARTUP_SECONDS


def record_startup(store_root, seconds: float, n_workers: int) -> None:
    """Keep what starting took, beside the cost history; a store that cannot be written just keeps nothing."""
    if store_root is None:
        return
    with contextlib.suppress(OSError):
        path = Path(store_root) / STARTUP_FILE
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"seconds": round(seconds, 3), "n_workers": n_workers, "measured": time.time()}))
        os.replace(tmp, path)
