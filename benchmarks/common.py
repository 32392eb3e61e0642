"""Shared benchmark plumbing: argument parsing, timing, medians, a warm LocalCluster."""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes, for CI: checks the script runs, not the goal")
    p.add_argument("--repeat", type=int, default=None, help="repetitions (median reported)")
    return p


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_of(fn: Callable[[], object], repeat: int) -> list[float]:
    times = [timed(fn) for _ in range(repeat)]
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


@contextlib.contextmanager
def warm_client(n_workers: int, threads_per_worker: int = 1):
    """A LocalCluster with worker processes, as compute(cluster=None) would start (TLS unless qcmb_dask.security is
    none), kept across repetitions."""
    import dask
    from distributed import Client, LocalCluster

    from qcmb_dask.clusters import scheduler_settings, security

    with (
        dask.config.set(scheduler_settings()),
        LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address="127.0.0.1:0",
            silence_logs=40,
            **security.local_cluster_options(),
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
