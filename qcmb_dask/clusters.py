"""``cluster=`` -> a running executor: in-process, an embedded LocalCluster, or a cluster the user has.

Knows nothing about chemistry: it runs an :class:`~qcmb_dask.graph.MBEGraph` and reports levels.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional, Sequence

import dask

from . import resources as res
from .graph import MBEGraph
from .progress import Reporter

BATCH_SYSTEMS = ("slurm", "pbs", "sge", "lsf", "htcondor", "oar", "moab")


class SyncSession:
    """Every fragment in this process, one at a time: the reference executor, and the one to debug with."""

    def __init__(self, resources: res.Resources):
        self.resources = resources

    def run(self, graph: MBEGraph, reporter: Reporter, bsse_types: Sequence[str]):
        result, *levels = dask.compute(graph.result, *graph.levels.values(), scheduler="sync")
        for level in levels:
            reporter.level(level, bsse_types)
        return result


class DistributedSession:
    """A ``distributed.Client``: levels are reported as soon as their fragments are done."""

    def __init__(self, client, resources: res.Resources):
        self.client = client
        self.resources = resources

    def run(self, graph: MBEGraph, reporter: Reporter, bsse_types: Sequence[str]):
        from distributed import as_completed

        reporter.dashboard(self.client.dashboard_link)
        level_nodes = list(graph.levels.values())
        futures = self.client.compute([graph.result, *level_nodes])
        result_future, level_futures = futures[0], futures[1:]
        try:
            for future in as_completed(level_futures):
                if future.status == "finished":
                    reporter.level(future.result(), bsse_types)
            return result_future.result()
        except BaseException:
            # On error or Ctrl-C, stop what is still queued: a shared cluster must not keep our work.
            self.client.cancel(futures)
            raise


def install_harnesses(client, harnesses: Sequence) -> None:
    """Register user harnesses on every worker, now and on workers that join later."""
    if harnesses:
        from .plugins import HarnessPlugin

        client.register_plugin(HarnessPlugin(list(harnesses)), name="qcmb-dask-harnesses")


@contextlib.contextmanager
def open_session(
    cluster: Any,
    *,
    n_workers: Optional[int],
    threads_per_task: Optional[int],
    memory_per_task: Optional[float],
    harnesses: Sequence = (),
    ncalculations: Optional[int] = None,
) -> Iterator[Any]:
    """Yield a session for ``cluster``; close what this call started, leave what the user gave running."""
    if cluster == "sync":
        yield SyncSession(res.in_process(threads_per_task, memory_per_task))
        return
    if cluster is None or cluster == "local":
        resources = res.for_this_machine(n_workers, threads_per_task, memory_per_task, ncalculations)
        with _local_client(resources) as client:
            install_harnesses(client, harnesses)
            yield DistributedSession(client, resources)
        return
    with _given_client(cluster) as client:
        install_harnesses(client, harnesses)
        yield DistributedSession(client, _given_resources(client, threads_per_task, memory_per_task))


@contextlib.contextmanager
def _local_client(resources: res.Resources):
    from distributed import Client, LocalCluster

    # One thread per worker process: PySCF's thread count is process-wide, so concurrency comes from
    # processes and each fragment gets threads_per_task cores of its own.
    with (
        LocalCluster(
            n_workers=resources.n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=dask.config.get("qcmb_dask.local.dashboard-address"),
            silence_logs=dask.config.get("qcmb_dask.local.silence-logs"),
        ) as local_cluster,
        Client(local_cluster) as client,
    ):
        yield client


@contextlib.contextmanager
def _given_client(cluster):
    from distributed import Client

    if isinstance(cluster, Client):
        yield cluster
        return
    if isinstance(cluster, str) and cluster.lower() in BATCH_SYSTEMS:
        raise ValueError(
            f"cluster={cluster!r}: batch schedulers through dask-jobqueue are not wired in yet. Start a "
            "dask-jobqueue cluster yourself and pass it: "
            "cluster = dask_jobqueue.SLURMCluster(cores=..., memory=...); cluster.scale(jobs=4)."
        )
    if (isinstance(cluster, str) and "://" in cluster) or hasattr(cluster, "scheduler_address"):
        with Client(cluster) as client:
            yield client
        return
    raise ValueError(
        f"cluster={cluster!r} is not understood. Use None (an embedded LocalCluster), 'sync' (in-process), "
        "a distributed.Client, a Dask cluster object, or a scheduler address such as 'tcp://host:8786'."
    )


def _given_resources(client, threads_per_task, memory_per_task) -> res.Resources:
    """On a cluster the user started, fragments get 1 core each unless told otherwise."""
    workers = client.scheduler_info().get("workers", {})
    slots = sum(w.get("nthreads", 1) for w in workers.values()) or 1
    threads = threads_per_task or 1
    if memory_per_task is None and workers:
        per_thread = [w["memory_limit"] / w["nthreads"] for w in workers.values() if w.get("memory_limit")]
        memory_per_task = round(0.8 * min(per_thread) * threads / 2**30, 2) if per_thread else None
    return res.Resources(max(1, slots // threads), threads, memory_per_task)
