"""``cluster=`` -> a running executor: in-process, an embedded LocalCluster, batch jobs (:mod:`qcmb_dask.batch`),
the ranks of an mpirun (:mod:`qcmb_dask.mpi`), or a cluster the user has.

Knows nothing about chemistry: it runs an :class:`~qcmb_dask.graph.MBEGraph` and reports fragments and levels.
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional, Sequence, Tuple

import dask

from . import batch_settings, events, watchdog
from . import resources as res
from .analysis import LevelResult, Outcome, summarize
from .fragment import fragment_error, worker_lost_error
from .graph import MBEGraph
from .progress import Reporter


class SyncSession:
    """Every fragment in this process, one at a time: the reference executor, and the one to debug with."""

    def __init__(self, resources: res.Resources):
        self.resources = resources

    def run(self, graph: MBEGraph, reporter: Reporter, bsse_types: Sequence[str]) -> Outcome:
        from dask.callbacks import Callback

        from .fragment import FragmentOutput

        label_of = {fragment.key: label for label, fragment in graph.fragments.items()}
        started = {}

        def fragment_started(key, dsk, state):
            started[key] = time.time()

        def fragment_ended(key, result, dsk, state, worker_id):
            if key in label_of:
                label = label_of[key]
                ok = isinstance(result, FragmentOutput)
                start = started.get(key)
                reporter.fragment(
                    label, graph.jobs[label].nbody, ok, ok and result.from_store, start, time.time(), "main"
                )

        reporter.start(graph.level_sizes, graph.costs)
        with Callback(pretask=fragment_started, posttask=fragment_ended):
            outcome, *levels = dask.compute(graph.outcome, *graph.levels.values(), scheduler="sync")
        reporter.finish()
        for level in levels:
            reporter.level(level, bsse_types)
        return outcome


class DistributedSession:
    """A ``distributed.Client``: levels are reported as soon as their fragments are done.

    Every fragment's future is held until the end, so that a fragment Dask gives up on (its worker
    died on every try, or it timed out) does not cancel the others: they finish and are stored.
    """

    def __init__(self, client, resources: res.Resources):
        self.client = client
        self.resources = resources

    def run(self, graph: MBEGraph, reporter: Reporter, bsse_types: Sequence[str]) -> Outcome:
        from distributed import as_completed, wait

        from .dashboard import live_page_link

        reporter.dashboard(self.client.dashboard_link)
        reporter.live_page(live_page_link(self.client))
        reporter.publish = functools.partial(events.publish, self.client)
        reporter.publish(
            "run",
            {"run": graph.run_id, "levels": graph.level_sizes, "bsse_types": list(bsse_types), "started": time.time()},
        )
        reporter.start(graph.level_sizes, graph.costs)
        nlevels = len(graph.levels)
        levels = [graph.levels[nbody] for nbody in sorted(graph.levels)]

        def fragments_ended(event):
            _, batch = event
            for record in events.unbatch(batch):
                if record.get("run") != graph.run_id:
                    continue
                reporter.fragment(
                    record["label"],
                    record["nbody"],
                    record["ok"],
                    record["from_store"],
                    record["start"],
                    record["stop"],
                    str(record["worker"]),
                )

        self.client.subscribe_topic(events.FRAGMENT_TOPIC, fragments_ended)
        futures = self.client.compute([graph.outcome, *levels, *graph.fragments.values()])
        outcome_future, level_futures, fragment_futures = futures[0], futures[1 : 1 + nlevels], futures[1 + nlevels :]
        try:
            # Levels k and k+1 often finish together (the last monomer completes both): report them in order.
            done, reported = set(), 0
            for future in as_completed(level_futures):
                done.add(future.key)
                while reported < nlevels and level_futures[reported].key in done:
                    if level_futures[reported].status == "finished":
                        reporter.level(level_futures[reported].result(), bsse_types)
                    reported += 1
            wait([outcome_future])
            if outcome_future.status == "finished":
                _await_last_fragment_records(reporter)
                return outcome_future.result()
            wait(fragment_futures)
            _await_last_fragment_records(reporter)
            lost = {label: f for label, f in zip(graph.fragments, fragment_futures) if f.status == "error"}
            if not lost:
                return outcome_future.result()  # the analysis itself failed: raise its error
            return self._outcome_with_lost_fragments(graph, lost, fragment_futures, level_futures)
        except BaseException:
            # On error or Ctrl-C, stop what is still queued: a shared cluster must not keep our work.
            self.client.cancel(futures)
            raise
        finally:
            self.client.unsubscribe_topic(events.FRAGMENT_TOPIC)
            reporter.finish()

    def _outcome_with_lost_fragments(self, graph: MBEGraph, lost: dict, fragment_futures, level_futures) -> Outcome:
        """Fragments Dask gave up on become failures beside those the fragments returned themselves."""
        from distributed import KilledWorker

        timeouts = watchdog.timeouts_seen(self.client)
        failures = []
        for label, future in lost.items():
            error = future.exception()
            job = graph.jobs[label]
            if isinstance(error, KilledWorker) and error.task != future.key:
                # ordering="by_level": it waited on a level that lost a fragment, and never ran.
                failures.append(fragment_error(job, "not_run", f"not run: it waits on {error.task}, which failed"))
            elif isinstance(error, KilledWorker):
                failures.append(worker_lost_error(job, error.allowed_failures + 1, timeouts.get(label)))
            else:
                failures.append(fragment_error(job, type(error).__name__, str(error)))
        finished = [f for f in fragment_futures if f.status == "finished"]
        stats, returned_failures = self.client.submit(summarize, finished, pure=False).result()
        levels = {
            level.nbody: level
            for level in self.client.gather([f for f in level_futures if f.status == "finished"])
            if isinstance(level, LevelResult)
        }
        return Outcome(None, failures + returned_failures, stats, levels)


def _await_last_fragment_records(reporter: Reporter) -> None:
    """Workers send fragment ends every ``events.FLUSH_SECONDS``: wait for the last batch (bounded: a lost
    worker's batch never comes), so that progress and the timeline count every fragment."""
    deadline = time.time() + 4 * events.FLUSH_SECONDS
    while reporter.progress is not None and reporter.progress.ndone < reporter.progress.ntotal:
        if time.time() > deadline:
            return
        time.sleep(0.02)


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
    timeout_per_task: Optional[float] = None,
    batch: Optional["BatchRequest"] = None,
) -> Iterator[Any]:
    """Yield a session for ``cluster``; close what this call started, leave what the user gave running.

    ``batch``: for a batch system (``cluster="slurm"`` or a profile file), the settings and job counts,
    resolved and checked before this is called (see :func:`batch_request`).
    """
    if batch is not None:
        from .batch import batch_client

        with batch_client(
            batch.settings,
            jobs=batch.jobs,
            adapt=batch.adapt,
            scheduler_settings=scheduler_settings(batch=True),
            worker_timeout=float(dask.config.get("qcmb_dask.batch.worker-timeout")),
        ) as client:
            install_harnesses(client, harnesses)
            settings = batch.settings
            workers = settings.workers_per_job * (batch.adapt[1] if batch.adapt else batch.jobs)
            yield DistributedSession(
                client, res.Resources(workers, settings.threads_per_task, settings.memory_per_task)
            )
        return
    if cluster == "sync":
        if timeout_per_task:
            raise ValueError(
                "timeout_per_task needs worker processes to stop (cluster=None, 'local' or a Dask cluster with "
                "nannies); the in-process executor ('sync') cannot stop a calculation."
            )
        yield SyncSession(res.in_process(threads_per_task, memory_per_task))
        return
    if cluster == "mpi":
        from .mpi import mpi_client

        worker_timeout = float(dask.config.get("qcmb_dask.batch.worker-timeout"))
        with mpi_client(scheduler_settings(), worker_timeout) as client:
            install_harnesses(client, harnesses)
            yield DistributedSession(client, _given_resources(client, threads_per_task, memory_per_task))
        return
    if cluster is None or cluster == "local":
        resources = res.for_this_machine(n_workers, threads_per_task, memory_per_task, ncalculations)
        with _local_client(resources) as client:
            install_harnesses(client, harnesses)
            yield DistributedSession(client, resources)
        return
    with _given_client(cluster) as client:
        if timeout_per_task:
            _check_workers_have_nannies(client)
        install_harnesses(client, harnesses)
        yield DistributedSession(client, _given_resources(client, threads_per_task, memory_per_task))


#: the module the scheduler loads for the live many-body page, /qcmb (named, not imported: it imports distributed)
LIVE_PAGE_ROUTES = "qcmb_dask.dashboard"
#: the scheduler preload that shortens Dask's batching of messages to workers (named, not imported, as above)
PROMPT_SENDS = "qcmb_dask.prompt_sends"


@dataclass(frozen=True)
class BatchRequest:
    """A batch cluster for one call: its settings and either a fixed number of jobs or adapt's bounds."""

    settings: batch_settings.BatchSettings
    jobs: Optional[int]
    adapt: Optional[Tuple[int, int]]


def batch_request(
    cluster: Any,
    *,
    jobs: Optional[int],
    adapt: Optional[Sequence[int]],
    cluster_options: Optional[dict],
    n_workers: Optional[int],
    threads_per_task: Optional[int],
    memory_per_task: Optional[float],
    ncalculations: int,
) -> Optional[BatchRequest]:
    """Check the batch arguments before anything is submitted; ``None`` when ``cluster`` is no batch system."""
    if not batch_settings.is_batch(cluster):
        given = [name for name, v in (("jobs", jobs), ("adapt", adapt), ("cluster_options", cluster_options)) if v]
        if given:
            raise ValueError(
                f"{', '.join(given)} apply to batch clusters (cluster='slurm', 'pbs', ... or a profile file); "
                f"cluster={cluster!r} is not one."
            )
        return None
    if n_workers is not None:
        raise ValueError("n_workers is for the embedded cluster; on a batch cluster give jobs=N or adapt=(min, max).")
    if jobs is not None and adapt is not None:
        raise ValueError("give jobs=N (a fixed number of jobs) or adapt=(min, max), not both.")
    settings = batch_settings.resolve(
        cluster, cluster_options, threads_per_task=threads_per_task, memory_per_task=memory_per_task
    )
    if adapt is not None:
        bounds = tuple(adapt)
        if (
            len(bounds) != 2
            or not all(isinstance(b, int) for b in bounds)
            or not 0 <= bounds[0] <= bounds[1]
            or bounds[1] < 1
        ):
            raise ValueError(
                f"adapt={adapt!r}: expected (minimum_jobs, maximum_jobs) with 0 <= minimum <= maximum, maximum >= 1."
            )
        return BatchRequest(settings, None, bounds)
    if jobs is None:
        jobs = batch_settings.jobs_for(
            ncalculations, settings.workers_per_job, int(dask.config.get("qcmb_dask.batch.max-jobs"))
        )
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs={jobs!r}: expected a positive number of jobs.")
    return BatchRequest(settings, jobs, None)


def scheduler_settings(batch: bool = False) -> dict:
    """Dask settings for a scheduler qcmb_dask starts (it reads them when it starts, in this process).

    - allowed-failures: tries of a fragment whose worker dies under it (a lost worker is rarely its fault;
      on a batch cluster, jobs end at their walltime or are pre-empted: ``qcmb_dask.batch.allowed-failures``);
    - worker-saturation (default 1.0): a worker holds only the fragments it is running, none queued behind
      them. A queued fragment would wait behind a long one instead of starting on the next free worker, and
      would count as a suspect each time that worker dies: behind a fragment that crashes its worker every
      time, the same next-in-priority fragment would fail with it. The scheduler round trip this costs is
      about 0.25 ms per fragment on 2 cores (benchmarks/overhead.py); fragments take seconds to hours.
    - preload :mod:`qcmb_dask.prompt_sends`: the scheduler sends each worker its next fragment within
      ``qcmb_dask.scheduler-send-interval`` rather than Dask's fixed 5 ms batching interval.
    """
    failures_key = "qcmb_dask.batch.allowed-failures" if batch else "qcmb_dask.allowed-failures"
    import distributed  # noqa: F401  loads distributed's defaults into dask.config (not loaded at our import)

    def with_ours(key: str, module: str) -> list:  # the user's modules stay, ours is added once
        modules = list(dask.config.get(key))
        return modules if module in modules else [*modules, module]

    return {
        "distributed.scheduler.http.routes": with_ours("distributed.scheduler.http.routes", LIVE_PAGE_ROUTES),
        "distributed.scheduler.preload": with_ours("distributed.scheduler.preload", PROMPT_SENDS),
        "distributed.scheduler.allowed-failures": dask.config.get(failures_key),
        "distributed.scheduler.worker-saturation": dask.config.get("qcmb_dask.worker-saturation"),
    }


@contextlib.contextmanager
def _local_client(resources: res.Resources):
    from distributed import Client, LocalCluster

    # One thread per worker process: PySCF's thread count is process-wide, so concurrency comes from
    # processes and each fragment gets threads_per_task cores of its own.
    with (
        dask.config.set(scheduler_settings()),
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
    if (isinstance(cluster, str) and "://" in cluster) or hasattr(cluster, "scheduler_address"):
        with Client(cluster) as client:
            yield client
        return
    raise ValueError(
        f"cluster={cluster!r} is not understood. Use None (an embedded LocalCluster), 'sync' (in-process), "
        f"a batch system ({', '.join(batch_settings.SYSTEMS)}) or a profile file (.yaml), 'mpi' (under mpirun), "
        "a distributed.Client, a Dask cluster object, or a scheduler address such as 'tcp://host:8786'."
    )


def _check_workers_have_nannies(client) -> None:
    workers = client.scheduler_info().get("workers", {})
    without = [addr for addr, w in workers.items() if not w.get("nanny")]
    if without:
        raise ValueError(
            f"timeout_per_task stops a fragment by ending its worker process, which needs a nanny to restart it; "
            f"{len(without)} worker(s) of this cluster have none (e.g. {without[0]}): start them with a nanny "
            "(the default of dask-worker and of LocalCluster with processes=True), or leave timeout_per_task out."
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
