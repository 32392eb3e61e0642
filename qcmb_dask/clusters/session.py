"""Sessions: a running executor that takes a run's graph and reports fragments and levels as they end.

:class:`SyncSession` runs every fragment in this process, one at a time; :class:`DistributedSession` runs the
graph on a ``distributed.Client`` of any kind. Both know nothing of chemistry beyond the graph's handles.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence

import dask

from qcmb_dask import keys
from qcmb_dask.clusters import resources as res
from qcmb_dask.diagnostics import run_events
from qcmb_dask.diagnostics.progress import Reporter
from qcmb_dask.errors import SchedulerLost
from qcmb_dask.graph import MBEGraph
from qcmb_dask.store import ResultStore
from qcmb_dask.worker import analysis
from qcmb_dask.worker.analysis import LevelResult, Outcome, summarize
from qcmb_dask.worker.events import FLUSH_SECONDS
from qcmb_dask.worker.fragment import fragment_error, worker_lost_error

#: distributed warns about graphs over 10 MB ("This may cause some slowdown"), which the user cannot act on: an
#: expansion's graph is one small node per calculation, about 370 bytes each (57,225 fragments: 20.85 MiB), and
#: it is shipped once. The warning is kept for graphs far beyond any plan qcmb_dask accepts (max-calculations),
#: and a threshold the user set is theirs.
LARGE_GRAPH_THRESHOLD = "distributed.admin.large-graph-warning-threshold"


def large_graph_settings() -> dict:
    from qcmb_dask.clusters.base import users_own

    return {} if users_own(LARGE_GRAPH_THRESHOLD) else {LARGE_GRAPH_THRESHOLD: "1GiB"}


class SyncSession:
    """Every fragment in this process, one at a time: the reference executor, and the one to debug with."""

    def __init__(self, resources: res.Resources, where: str = "", kind: str = "sync"):
        self.resources = resources
        #: the line that says where the run goes
        self.where = where
        #: what ``cluster=`` chose, for the result's record of how it was made
        self.kind = kind

    def describe(self) -> dict:
        return {"kind": self.kind, "workers": 1, "where": self.where}

    def run(self, graph: MBEGraph, reporter: Reporter, bsse_types: Sequence[str]) -> Outcome:
        from dask.callbacks import Callback

        from qcmb_dask.worker.warmup import prime_qcengine

        if self.where:
            reporter.say(self.where)
        prime_qcengine()  # waits for the thread that began it while the plan was made

        from qcmb_dask.worker.fragment import FragmentOutput

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

    def __init__(self, client, resources: res.Resources, where: str = "", kind: str = "given"):
        self.client = client
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
            return self._run(graph, reporter, bsse_types)

    def _run(self, graph: MBEGraph, reporter: Reporter, bsse_types: Sequence[str]) -> Outcome:
        from distributed import as_completed, wait

        from qcmb_dask.diagnostics.page import live_page_link

        if self.where:
            reporter.say(self.where)
        reporter.dashboard(self.client.dashboard_link)
        reporter.live_page(live_page_link(self.client))
        run_events.publish_run(self.client, graph.run_id, graph.level_sizes, bsse_types, time.time())
        reporter.start(graph.level_sizes, graph.costs)
        nlevels = len(graph.levels)
        levels = [graph.levels[nbody] for nbody in sorted(graph.levels)]

        def fragments_ended(event):
            _, batch = event
            for record in run_events.unbatch(batch):
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

        started = time.time()
        self.client.subscribe_topic(keys.FRAGMENT_TOPIC, fragments_ended)
        with dask.config.set(large_graph_settings()):
            futures = self.client.compute([graph.outcome, *levels, *graph.fragments.values()])
        outcome_future, level_futures, fragment_futures = futures[0], futures[1 : 1 + nlevels], futures[1 + nlevels :]
        try:
            # Levels k and k+1 often finish together (the last monomer completes both): report them in order.
            done, reported = set(), 0
            nbodies = sorted(graph.levels)
            for future in as_completed(level_futures):
                done.add(future.key)
                while reported < nlevels and level_futures[reported].key in done:
                    level = self._level(graph, nbodies[reported], level_futures[reported], fragment_futures)
                    if level is not None:
                        run_events.publish_level(self.client, level, bsse_types)
                        reporter.level(level, bsse_types)
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
        except BaseException as err:
            if isinstance(err, Exception) and _scheduler_lost(self.client, err):
                store = next(iter(graph.jobs.values())).policy.store if graph.jobs else None
                stored = ResultStore(store).written_since(started) if store else None
                raise SchedulerLost(_address(self.client), stored, store) from err
            # On error or Ctrl-C, stop what is still queued: a shared cluster must not keep our work.
            with contextlib.suppress(Exception):  # a scheduler that went away has nothing left to cancel
                self.client.cancel(futures)
            raise
        finally:
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(keys.FRAGMENT_TOPIC)
            reporter.finish()

    def _level(self, graph: MBEGraph, nbody: int, future, fragment_futures):
        """A level's result; where its node was lost with a worker (a fragment that crashed its worker took the
        analysis queued behind it) but every calculation it reads finished, the analysis again, here."""
        from distributed import wait

        if future.status == "finished":
            return future.result()
        normalized, labels = graph.level_inputs[nbody]
        needed = [f for label, f in zip(graph.fragments, fragment_futures) if graph.jobs[label].nbody <= nbody]
        wait(needed)
        if any(f.status != "finished" for f in needed):
            return None
        with contextlib.suppress(Exception):  # a level that cannot be redone is reported missing, as before
            return analysis.level_result(normalized, nbody, list(labels), self.client.gather(needed))
        return None

    def _outcome_with_lost_fragments(self, graph: MBEGraph, lost: dict, fragment_futures, level_futures) -> Outcome:
        """Fragments Dask gave up on become failures beside those the fragments returned themselves."""
        from distributed import KilledWorker

        timeouts = timeouts_seen(self.client)
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
        computed = [self._level(graph, n, f, fragment_futures) for n, f in zip(sorted(graph.levels), level_futures)]
        levels = {level.nbody: level for level in computed if isinstance(level, LevelResult)}
        return Outcome(None, failures + returned_failures, stats, levels)


def _scheduler_lost(client, err: Exception) -> bool:
    """The run ended because the client lost its scheduler (killed, its node gone), not by its own error."""
    return "scheduler-connection-lost" in str(err) or client.status in ("closing", "closed", "connecting")


def _address(client) -> str:
    with contextlib.suppress(Exception):
        return client.scheduler.address
    return "(unknown)"


def _await_last_fragment_records(reporter: Reporter, seconds: float = 4 * FLUSH_SECONDS) -> None:
    """Workers send fragment ends every ``FLUSH_SECONDS``: wait for the last batch (bounded: a lost
    worker's batch never comes), so that progress and the timeline count every fragment."""
    deadline = time.time() + seconds
    while reporter.log is not None and reporter.log.ndone < reporter.log.ntotal:
        if time.time() > deadline:
            return
        time.sleep(0.02)


def timeouts_seen(client) -> dict:
    """label -> timeout (s), for every fragment the watchdog stopped on this client's scheduler."""
    seen = {}
    with contextlib.suppress(Exception):
        for _, event in client.get_events(keys.TIMEOUT_EVENT):
            seen[event["label"]] = event["timeout"]
    return seen
