"""Sessions: a running executor that takes a run's graph and reports fragments and levels as they end.

:class:`SyncSession` runs every fragment in this process, one at a time; :class:`DistributedSession` runs the
graph on a ``distributed.Client`` of any kind. :func:`open_session` makes the one a backend's
:class:`~qcmb_dask.clusters.base.Connection` calls for. Neither knows which kind of cluster it runs on, nor
chemistry beyond the graph's handles.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence

import dask

from qcmb_dask import keys
from qcmb_dask.clusters import resources as res
from qcmb_dask.diagnostics import run_events
from qcmb_dask.diagnostics.progress import Reporter
from qcmb_dask.diagnostics.runs_on_scheduler import RunsOnScheduler
from qcmb_dask.errors import SchedulerLost
from qcmb_dask.execution import subscriptions
from qcmb_dask.execution.streamed import COMPUTED, Stream
from qcmb_dask.graph import MBEGraph
from qcmb_dask.qcmanybody_adapter import EMBEDDING_VARIABLE
from qcmb_dask.store import ResultStore
from qcmb_dask.worker import analysis
from qcmb_dask.worker.analysis import LevelResult, Outcome, summarize
from qcmb_dask.worker.events import flush_seconds
from qcmb_dask.worker.fragment import fragment_error, worker_lost_error
from qcmb_dask.worker.plugins import ProcessSettings

#: distributed warns about graphs over 10 MB ("This may cause some slowdown"), which the user cannot act on: an
#: expansion's graph is one small node per calculation, about 370 bytes each (57,225 fragments: 20.85 MiB), and
#: it is shipped once. The warning is kept for graphs far beyond any plan qcmb_dask accepts (max-calculations),
#: and a threshold the user set is theirs.
LARGE_GRAPH_THRESHOLD = "distributed.admin.large-graph-warning-threshold"


def open_session(connection) -> SyncSession | DistributedSession:
    """The executor for a backend's :class:`~qcmb_dask.clusters.base.Connection`."""
    if connection.client is None:
        return SyncSession(connection.resources, connection.where, kind=connection.kind)
    return DistributedSession(
        connection.client,
        connection.resources,
        connection.where,
        kind=connection.kind,
        task_resources=connection.task_resources,
        gpu_workers=connection.gpu_workers,
        cpu_workers_declared=connection.cpu_workers_declared,
    )


def large_graph_settings() -> dict:
    from qcmb_dask.clusters.base import users_own

    return {} if users_own(LARGE_GRAPH_THRESHOLD) else {LARGE_GRAPH_THRESHOLD: "1GiB"}


class SyncSession:
    """Every fragment in this process, one at a time: the reference executor, and the one to debug with."""

    #: no client, no workers: what the keywords ask runs in this process (no placement, no Dask resources)
    client = None
    task_resources = None
    gpu_workers = 0
    cpu_workers_declared = False

    def __init__(self, resources: res.Resources, where: str = "", kind: str = "sync"):
        self.resources = resources
        #: the line that says where the run goes
        self.where = where
        #: what ``cluster=`` chose, for the result's record of how it was made
        self.kind = kind

    def describe(self) -> dict:
        return {"kind": self.kind, "workers": 1, "where": self.where}

    def run(self, graph: MBEGraph, reporter: Reporter, bsse_types: Sequence[str]) -> Outcome:
        return self.run_many([graph], reporter, bsse_types)[0]

    def run_many(
        self,
        graphs: Sequence[MBEGraph],
        reporter: Reporter,
        bsse_types: Sequence[str],
        input_done: Callable[[int, Outcome], None] | None = None,
    ) -> list[Outcome]:
        from dask.callbacks import Callback

        from qcmb_dask.worker.fragment import FragmentOutput
        from qcmb_dask.worker.warmup import prime_qcengine

        if self.where:
            reporter.say(self.where)
        prime_qcengine()  # waits for the thread that began it while the plan was made

        jobs = jobs_by_key(graphs)
        started = {}

        def fragment_started(key, dsk, state):
            started[key] = time.time()

        def fragment_ended(key, result, dsk, state, worker_id):
            if key in jobs:
                job = jobs[key]
                ok = isinstance(result, FragmentOutput)
                reporter.fragment(
                    job.label, job.nbody, ok, ok and result.from_store, started.get(key), time.time(), "main"
                )

        reporter.start(_level_sizes(jobs.values()), _costs(graphs))
        single = graphs[0] if len(graphs) == 1 else None
        levels = [single.levels[nbody] for nbody in sorted(single.levels)] if single else []
        with Callback(pretask=fragment_started, posttask=fragment_ended):
            (*outcomes,) = dask.compute(*(g.outcome for g in graphs), *levels, scheduler="sync")
        outcomes, levels = outcomes[: len(graphs)], outcomes[len(graphs) :]
        reporter.finish()
        for level in levels:
            reporter.level(level, bsse_types)
        for index, outcome in enumerate(outcomes):
            if input_done is not None:
                input_done(index, outcome)
        return outcomes


class DistributedSession:
    """A ``distributed.Client``: levels are reported as soon as their fragments are done.

    Every fragment's future is held until the end, so that a fragment Dask gives up on (its worker
    died on every try, or it timed out) does not cancel the others: they finish and are stored.
    """

    def __init__(
        self,
        client,
        resources: res.Resources,
        where: str = "",
        kind: str = "given",
        task_resources: dict[str, float] | None = None,
        gpu_workers: int = 0,
        cpu_workers_declared: bool = False,
    ):
        self.client = client
        #: how many of the workers have a GPU (or a share of one): where fragments placed on a GPU go
        self.gpu_workers = gpu_workers
        #: whether the other workers declare the CPU resource (CPU fragments may then ask for it)
        self.cpu_workers_declared = cpu_workers_declared
        #: Dask resources every task of a run asks for (one fragment per process on workers with several threads)
        self.task_resources = task_resources
        self.resources = resources
        #: the line that says where the run goes
        self.where = where
        #: what ``cluster=`` chose, for the result's record of how it was made
        self.kind = kind

    def describe(self) -> dict:
        workers = {}
        with contextlib.suppress(Exception):  # a scheduler already gone has no workers to count
            workers = self.client.scheduler_info().get("workers", {})
        return {
            "kind": self.kind,
            "workers": len(workers),
            "threads": sum(w.get("nthreads", 0) for w in workers.values()),
            "scheduler": _address(self.client),
            "where": self.where,
        }

    def run(self, graph: MBEGraph, reporter: Reporter, bsse_types: Sequence[str]) -> Outcome:
        # Dask's helpers (as_completed, wait, the futures' own calls) use the current client: this one, even
        # where the user has another client as their default.
        with self.client.as_current():
            return self._run([graph], reporter, bsse_types)[0]

    def run_many(
        self,
        graphs: Sequence[MBEGraph],
        reporter: Reporter,
        bsse_types: Sequence[str],
        input_done: Callable[[int, Outcome], None] | None = None,
    ) -> list[Outcome]:
        """Every input's graph at once (one Dask graph: a calculation they share runs once); ``input_done(i,
        outcome)`` as each input's analysis ends. An input whose analysis raised has its exception in place of
        its outcome."""
        with self.client.as_current():
            return self._run(graphs, reporter, bsse_types, input_done)

    def _run(self, graphs, reporter: Reporter, bsse_types, input_done=None) -> list[Outcome]:
        from distributed import as_completed

        from qcmb_dask.diagnostics.page import live_page_link

        run_id = graphs[0].run_id
        jobs = jobs_by_key(graphs)
        level_sizes = _level_sizes(jobs.values())
        if any(job.embedding_charges for job in jobs.values()):
            self.client.register_plugin(
                ProcessSettings(environment={EMBEDDING_VARIABLE: "1"}), name=keys.EMBEDDING_PLUGIN
            )
        with contextlib.suppress(Exception):  # a scheduler without qcmb_dask installed: no page, same run
            self.client.register_plugin(RunsOnScheduler())
        if self.where:
            reporter.say(self.where)
        reporter.dashboard(self.client.dashboard_link)
        reporter.live_page(live_page_link(self.client))
        placement = graphs[0].placement if len(graphs) == 1 else None
        run_events.publish_run(
            self.client,
            run_id,
            level_sizes,
            bsse_types,
            time.time(),
            len(graphs),
            placement={**placement.counts(), "summary": placement.summary()} if placement is not None else None,
        )
        reporter.start(level_sizes, _costs(graphs))
        single = graphs[0] if len(graphs) == 1 else None
        levels = [single.levels[nbody] for nbody in sorted(single.levels)] if single else []
        nlevels, ngraphs = len(levels), len(graphs)

        def fragment_ended(record):
            reporter.fragment(
                record["label"],
                record["nbody"],
                record["ok"],
                record["from_store"],
                record["start"],
                record["stop"],
                str(record["worker"]),
            )

        started = time.time()
        streamed = single is not None and single.batches and single.streamable
        futures: list = []
        with subscriptions.fragment_records(self.client, run_id, fragment_ended):
            try:
                if streamed:
                    stream = Stream(self.client, single, self.task_resources, self._lost_failures)
                    try:
                        outcome = stream.run(lambda level: self._say_level(single, level, reporter, bsse_types))
                    finally:
                        futures = stream.held()
                    if input_done is not None:
                        input_done(0, outcome)
                    _await_last_fragment_records(reporter)
                    return [outcome]
                fragments = {d.key: d for g in graphs for d in g.fragments.values()}  # shared calculations once
                with dask.config.set(large_graph_settings()):
                    futures = self.client.compute(
                        [*(g.outcome for g in graphs), *levels, *fragments.values()], resources=self.task_resources
                    )
                outcome_futures = futures[:ngraphs]
                level_futures = futures[ngraphs : ngraphs + nlevels]
                future_of = dict(zip(fragments, futures[ngraphs + nlevels :]))
                if single:
                    self._report_levels(single, level_futures, future_of, reporter, bsse_types)
                outcomes: list = [None] * ngraphs
                for future in as_completed(outcome_futures):
                    index = outcome_futures.index(future)
                    try:
                        outcomes[index] = self._outcome(graphs[index], future, future_of, level_futures)
                    except Exception as err:
                        if single or _scheduler_lost(self.client, err):
                            raise
                        outcomes[index] = err  # one input's analysis failed: the others go on
                    if input_done is not None:
                        input_done(index, outcomes[index])
                _await_last_fragment_records(reporter)
                return outcomes
            except BaseException as err:
                if isinstance(err, Exception) and _scheduler_lost(self.client, err):
                    store = next(iter(jobs.values())).policy.store if jobs else None
                    stored = ResultStore(store).written_since(started) if store else None
                    raise SchedulerLost(_address(self.client), stored, store) from err
                # On error or Ctrl-C, stop what is still queued: a shared cluster must not keep our work.
                with contextlib.suppress(Exception):  # a scheduler that went away has nothing left to cancel
                    self.client.cancel(futures)
                raise
            finally:
                reporter.finish()

    def _say_level(self, graph: MBEGraph, level, reporter: Reporter, bsse_types) -> None:
        run_events.publish_level(self.client, graph.run_id, level, bsse_types)
        reporter.level(level, bsse_types)

    def _report_levels(self, graph: MBEGraph, level_futures, future_of, reporter, bsse_types) -> None:
        """Each k-body result as soon as it is ready; levels k and k+1 often finish together (the last monomer
        completes both): reported in order."""
        from distributed import as_completed

        nlevels, nbodies = len(level_futures), sorted(graph.levels)
        done, reported = set(), 0
        for future in as_completed(level_futures):
            done.add(future.key)
            while reported < nlevels and level_futures[reported].key in done:
                level = self._level(graph, nbodies[reported], level_futures[reported], future_of)
                if level is not None:
                    self._say_level(graph, level, reporter, bsse_types)
                reported += 1

    def _outcome(self, graph: MBEGraph, outcome_future, future_of: dict, level_futures) -> Outcome:
        """The input's outcome; where Dask gave up on some of its fragments (lost workers, timeouts), an
        outcome that lists them beside the failures the fragments returned."""
        from distributed import wait

        wait([outcome_future])
        if outcome_future.status == "finished":
            return outcome_future.result()
        mine = {label: future_of[d.key] for label, d in graph.fragments.items()}
        wait(list(mine.values()))
        lost = {label: f for label, f in mine.items() if f.status == "error"}
        if not lost:
            return outcome_future.result()  # the analysis itself failed: raise its error
        return self._outcome_with_lost_fragments(graph, lost, mine, level_futures)

    def _level(self, graph: MBEGraph, nbody: int, future, future_of: dict):
        """A level's result; where its node was lost with a worker (a fragment that crashed its worker took the
        analysis queued behind it) but every calculation it reads finished, the analysis again, here."""
        from distributed import wait

        if future.status == "finished":
            return future.result()
        normalized, labels, screened = graph.level_inputs[nbody]
        needed = {label: future_of[d.key] for label, d in graph.fragments.items() if graph.jobs[label].nbody <= nbody}
        wait(list(needed.values()))
        if any(f.status not in COMPUTED for f in needed.values()):
            return None
        with contextlib.suppress(Exception):  # a level that cannot be redone is reported missing, as before
            outputs = self.client.gather(list(needed.values()))
            return analysis.level_result(normalized, nbody, list(labels), outputs, list(needed), screened)
        return None

    def _outcome_with_lost_fragments(self, graph: MBEGraph, lost: dict, mine: dict, level_futures) -> Outcome:
        """Fragments Dask gave up on become failures beside those the fragments returned themselves."""
        failures = self._lost_failures(graph, lost)
        finished = [f for f in mine.values() if f.status in COMPUTED]
        stats, returned_failures = self.client.submit(summarize, finished, pure=False).result()
        future_of = {d.key: mine[label] for label, d in graph.fragments.items()}
        levels = {}
        if level_futures:
            computed = [self._level(graph, n, f, future_of) for n, f in zip(sorted(graph.levels), level_futures)]
            levels = {level.nbody: level for level in computed if isinstance(level, LevelResult)}
        return Outcome(None, failures + returned_failures, stats, levels)

    def _lost_failures(self, graph: MBEGraph, lost: dict) -> list:
        """label -> erred future of a fragment Dask gave up on: the failures that say why."""
        from distributed import KilledWorker

        timeouts = timeouts_seen(self.client, graph.run_id)
        failures = []
        for label, future in lost.items():
            error = future.exception()
            job = graph.jobs[label]
            killed = isinstance(error, KilledWorker)
            # a gradient of a Hessian from differences is its own task, named after the fragment's key
            own = killed and (error.task == future.key or str(error.task).endswith(f"-{future.key}"))
            if killed and not own:
                # ordering="by_level": it waited on a level that lost a fragment, and never ran.
                failures.append(fragment_error(job, "not_run", f"not run: it waits on {error.task}, which failed"))
            elif killed:
                failures.append(worker_lost_error(job, error.allowed_failures + 1, timeouts.get(job.label)))
            else:
                failures.append(fragment_error(job, type(error).__name__, str(error)))
        return failures


def _scheduler_lost(client, err: Exception) -> bool:
    """The run ended because the client lost its scheduler (killed, its node gone), not by its own error."""
    return "scheduler-connection-lost" in str(err) or client.status in ("closing", "closed", "connecting")


def _address(client) -> str:
    with contextlib.suppress(Exception):
        return client.scheduler.address
    return "(unknown)"


def _await_last_fragment_records(reporter: Reporter) -> None:
    """Workers send fragment ends every ``qcmb_dask.fragment-event-interval``: wait for the last batch (bounded:
    a lost worker's batch never comes), so that progress and the timeline count every fragment."""
    deadline = time.time() + 4 * flush_seconds()
    while reporter.log is not None and reporter.log.ndone < reporter.log.ntotal:
        if time.time() > deadline:
            return
        time.sleep(0.02)


def timeouts_seen(client, run_id: str) -> dict:
    """label -> timeout (s), for every fragment of run ``run_id`` the watchdog stopped (a long-lived scheduler
    keeps earlier runs' timeouts too)."""
    seen = {}
    with contextlib.suppress(Exception):
        for _, event in client.get_events(keys.TIMEOUT_EVENT):
            if event.get("run") == run_id:
                seen[event["label"]] = event["timeout"]
    return seen


def jobs_by_key(graphs) -> dict:
    """Fragment key -> what its node runs: a calculation several inputs share runs as the first input's."""
    return {d.key: g.jobs[label] for g in reversed(graphs) for label, d in g.fragments.items()}


def _costs(graphs) -> dict[str, float]:
    """The label each fragment reports under -> its estimated one-core seconds (the ETA weighs by it)."""
    return {g.jobs[label].label: cost for g in graphs for label, cost in g.costs.items()}


def _level_sizes(jobs) -> dict[int, int]:
    sizes: dict[int, int] = {}
    for job in jobs:
        sizes[job.nbody] = sizes.get(job.nbody, 0) + 1
    return dict(sorted(sizes.items()))
