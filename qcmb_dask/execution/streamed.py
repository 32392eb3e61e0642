"""Streamed submission: a run's graph goes to the scheduler batch by batch, a bounded window ahead of the workers.

distributed takes a graph in one message and plans all of it before its first task starts (distributed's own issue
threads report workers idle for 40-90 s before a 100k-task graph starts), and holds all of it. Here the parent
molecule goes first, then the batches of :class:`qcmb_dask.graph.Batch` (highest priority first) while fewer than
the window's calculations are unfinished, and each node of the analysis tree as soon as what it reads has been
submitted. A batch's partial sum runs on a worker as soon as its fragments are done, and the fragments' results
are then released. The client holds the futures of the batches in flight, one future per batch sum and the tree's
few nodes: O(batches), never O(fragments).

Where Dask gave up on a fragment (its worker died on every try, or it timed out), the sums that read it fail, and
so do the levels and the outcome above them; every other batch still runs and is stored, and the outcome lists
the lost fragments beside the failures the others returned, with the levels that could be formed.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable

from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

from qcmb_dask.graph import Batch, MBEGraph
from qcmb_dask.options import setting
from qcmb_dask.worker import tree
from qcmb_dask.worker.analysis import LevelResult, Outcome

#: how often the window re-reads the cluster's thread count (workers join and leave)
THREADS_REFRESH_S = 2.0


class Stream:
    """One graph, submitted part by part on ``client``; :meth:`run` gives its :class:`Outcome`."""

    def __init__(self, client, graph: MBEGraph, task_resources: dict | None, lost_failures: Callable):
        self.client, self.graph, self.task_resources = client, graph, task_resources
        #: (graph, {label: future}) -> FragmentErrors for fragments Dask gave up on
        self.lost_failures = lost_failures
        self.batch_size = max(1, int(setting("stream.batch-size", 500)))
        self.ahead = max(1, float(setting("stream.ahead", 4)))
        self.submitted: set = set()
        self.names = itertools.count()
        self.waiting_tree = dict(graph.tree)  # tree node -> what it reads, not yet submitted
        self.tree_futures: dict = {}
        self.sum_futures: dict = {}  # every batch's partial sum (the outcome of a run with lost fragments reads them)
        self.in_flight: dict = {}  # sum key -> (batch, its fragments' futures)
        self.lost: list = []  # FragmentErrors of fragments Dask gave up on
        self.salvaged: list = []  # partials of the fragments that finished in a batch that lost one
        self.unfinished = 0
        self._threads, self._threads_read = 0, 0.0
        #: the nodes whose ends the run follows: each level, and the outcome
        self.followed = {d.key for d in graph.levels.values()} | {graph.outcome.key}

    def window(self) -> int:
        """Calculations kept submitted and unfinished: ``ahead`` per worker thread, at least two batches."""
        if time.monotonic() - self._threads_read > THREADS_REFRESH_S:
            info = self.client.scheduler_info()
            self._threads = sum(w.get("nthreads", 0) for w in info.get("workers", {}).values())
            self._threads_read = time.monotonic()
        return max(2 * self.batch_size, int(self.ahead * self._threads))

    def _submit(self, keys: Iterable[str], wanted: Iterable[str]) -> list:
        """Send ``keys``' tasks (their dependencies are in them or submitted before); futures of ``wanted``."""
        name = f"qcmb-dask-part-{next(self.names)}-{self.graph.run_id}"
        layer = {key: self.graph.tasks[key] for key in keys}
        annotations = self.graph.annotations or None
        hlg = HighLevelGraph({name: MaterializedLayer(layer, annotations=annotations)}, {name: set()})
        self.submitted.update(layer)
        handles = [Delayed(key, hlg, layer=name) for key in wanted]
        return self.client.compute(handles, resources=self.task_resources, optimize_graph=False)

    def _submit_batch(self, batch: Batch, completed) -> None:
        futures = self._submit((*batch.keys, batch.sum_key), (*batch.fragments, batch.sum_key))
        self.in_flight[batch.sum_key] = (batch, dict(zip(batch.fragments, futures[:-1])))
        self.sum_futures[batch.sum_key] = futures[-1]
        self.unfinished += len(batch.fragments)
        completed.add(futures[-1])

    def _submit_tree(self, completed) -> None:
        """Every tree node whose inputs are all submitted, in the tree's (topological) order."""
        for key, reads in list(self.waiting_tree.items()):
            if all(read in self.submitted for read in reads):
                del self.waiting_tree[key]
                (future,) = self._submit([key], [key])
                self.tree_futures[key] = future
                if key in self.followed:
                    completed.add(future)

    def run(self, report_level: Callable[[object], None]) -> tuple[Outcome, list]:
        """Submit, follow, and return the outcome and every future still held (for a cancel on the way out)."""
        from distributed import as_completed

        graph = self.graph
        completed = as_completed()
        self.parent = self._submit([graph.parent.key], [graph.parent.key])  # held: every batch reads it
        batches = iter(graph.batches)
        pending = True

        def fill() -> None:
            nonlocal pending
            while pending and (self.unfinished < self.window() or len(self.in_flight) < 2):
                batch = next(batches, None)
                if batch is None:
                    pending = False
                    break
                self._submit_batch(batch, completed)
                self._submit_tree(completed)

        fill()
        levels_by_key = {d.key: nbody for nbody, d in graph.levels.items()}
        level_order = sorted(graph.levels)
        level_done: dict[int, object] = {}
        reported = 0
        outcome_future = None
        for future in completed:
            key = future.key
            if key in self.in_flight:
                self._batch_ended(key, future)
                fill()
            elif key in levels_by_key:
                level_done[levels_by_key[key]] = future
                while reported < len(level_order) and level_order[reported] in level_done:
                    done = level_done[level_order[reported]]
                    if done.status == "finished":
                        report_level(done.result())
                    reported += 1
            elif key == graph.outcome.key:
                outcome_future = future
        return self._outcome(outcome_future, level_done), self.held()

    def _batch_ended(self, key: str, future) -> None:
        """A batch's sum is in: its fragments' results are released; where Dask gave up on some of them, they
        become failures and the others' statistics are kept."""
        from distributed import wait

        batch, fragments = self.in_flight.pop(key)
        self.unfinished -= len(batch.fragments)
        if future.status == "finished":
            return
        wait(list(fragments.values()))
        label_of = self._labels()
        lost = {label_of[k]: f for k, f in fragments.items() if f.status != "finished"}
        self.lost.extend(self.lost_failures(self.graph, lost))
        done = [(label_of[k], f) for k, f in fragments.items() if f.status == "finished"]
        if done:
            analyses = {}  # statistics only: the sums of a batch that lost a fragment are not used
            partial = self.client.submit(
                tree.batch, analyses, [label for label, _ in done], False, [f for _, f in done], pure=False
            )
            self.salvaged.append(partial)

    def _labels(self) -> dict:
        if not hasattr(self, "_label_of"):
            self._label_of = {d.key: label for label, d in self.graph.fragments.items()}
        return self._label_of

    def _outcome(self, outcome_future, level_done: dict) -> Outcome:
        """The outcome node's, or, where fragments were lost, one made of what every batch and level gave."""
        if outcome_future is not None and outcome_future.status == "finished" and not self.lost:
            return outcome_future.result()
        if not self.lost:
            return outcome_future.result()  # the analysis itself failed: raise its error
        finished = [f for f in self.sum_futures.values() if f.status == "finished"]
        partial = self.client.submit(tree.merge, *finished, *self.salvaged, pure=False).result()
        levels = {}
        for nbody, future in level_done.items():
            if future.status == "finished":
                level = future.result()
                if isinstance(level, LevelResult):
                    levels[nbody] = level
        return Outcome(None, self.lost + partial.failures, partial.stats, levels)

    def held(self) -> list:
        futures = [*getattr(self, "parent", []), *self.sum_futures.values(), *self.tree_futures.values()]
        futures += self.salvaged
        for _, fragments in self.in_flight.values():
            futures.extend(fragments.values())
        return futures
