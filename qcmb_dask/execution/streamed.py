"""Streamed submission: a run's graph goes to the scheduler batch by batch, a bounded window ahead of the workers.

distributed takes a graph in one message and plans all of it before its first task starts (distributed's own issue
threads report workers idle for 40-90 s before a 100k-task graph starts), and holds all of it. Here the parent
molecule goes first, then the batches of :class:`qcmb_dask.graph.Batch` (highest priority first) while fewer than
the window's calculations are unfinished. Each batch's partial sum (:func:`qcmb_dask.worker.tree.batch`) runs on a
worker as soon as its fragments are done; the client takes it, adds it to its level's total and lets go of the
batch. Levels and the outcome are formed here from those totals (a few numbers per level; full-size arrays for
derivatives), as the tree's level and outcome nodes would form them.

Why the sums come to the client rather than meeting in merge nodes on workers: the scheduler keeps every task
that a result held in memory was computed from (to recompute it if its worker is lost), so a tree of merges
would keep every fragment's task on the scheduler until the end. Taking each batch's sum ends its lineage: the
scheduler forgets the batch, and holds only the window.

Where Dask gave up on a fragment (its worker died on every try, or it timed out), its batch's sum fails: the
others of that batch give their statistics, the lost one becomes a failure of its level, and every other batch
still runs and is stored. Levels with a failure are incomplete; the outcome lists every failure.
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
from qcmb_dask.worker.analysis import Outcome

#: how often the window re-reads the cluster's thread count (workers join and leave)
THREADS_REFRESH_S = 2.0


class Stream:
    """One graph, submitted part by part on ``client``; :meth:`run` gives its :class:`Outcome`."""

    def __init__(self, client, graph: MBEGraph, task_resources: dict | None, lost_failures: Callable):
        self.client, self.graph, self.task_resources = client, graph, task_resources
        #: (graph, {label: erred future}) -> FragmentErrors for fragments Dask gave up on
        self.lost_failures = lost_failures
        self.batch_size = max(1, int(setting("stream.batch-size", 500)))
        self.ahead = max(1.0, float(setting("stream.ahead", 4)))
        self.names = itertools.count()
        self.in_flight: dict = {}  # sum key -> (batch, its sum's future, its fragments' futures)
        self.unfinished = 0
        #: n-body level -> the total of its batches so far, and how many of its batches are still to come
        self.totals: dict[int, tree.Partial] = {}
        self.remaining: dict[int, int] = {}
        for batch in graph.batches:
            self.remaining[batch.nbody] = self.remaining.get(batch.nbody, 0) + 1
            self.totals.setdefault(batch.nbody, tree.Partial())
        self._threads, self._threads_read = 0, 0.0
        self.parent: list = []

    def window(self) -> int:
        """Calculations kept submitted and unfinished: ``ahead`` per worker thread, at least two batches."""
        if time.monotonic() - self._threads_read > THREADS_REFRESH_S:
            info = self.client.scheduler_info()
            self._threads = sum(w.get("nthreads", 0) for w in info.get("workers", {}).values())
            self._threads_read = time.monotonic()
        return max(2 * self.batch_size, int(self.ahead * self._threads))

    def _submit(self, keys: Iterable[str], wanted: Iterable[str]) -> list:
        """Send ``keys``' tasks (what they read is among them or was sent before); the futures of ``wanted``."""
        name = f"qcmb-dask-part-{next(self.names)}-{self.graph.run_id}"
        layer = {key: self.graph.tasks[key] for key in keys}
        annotations = self.graph.annotations or None
        hlg = HighLevelGraph({name: MaterializedLayer(layer, annotations=annotations)}, {name: set()})
        handles = [Delayed(key, hlg, layer=name) for key in wanted]
        return self.client.compute(handles, resources=self.task_resources, optimize_graph=False)

    def _submit_batch(self, batch: Batch, completed) -> None:
        futures = self._submit((*batch.keys, batch.sum_key), (*batch.fragments, batch.sum_key))
        self.in_flight[batch.sum_key] = (batch, futures[-1], dict(zip(batch.fragments, futures[:-1])))
        self.unfinished += len(batch.fragments)
        completed.add(futures[-1])

    def run(self, report_level: Callable[[object], None]) -> Outcome:
        """Submit, follow, and form each level as its batches are in, then the outcome."""
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

        fill()
        levels = sorted(graph.analysis.level_counts)
        formed: dict[int, object] = {}
        for future in completed:
            self._batch_ended(future.key, future)
            fill()
            while len(formed) < len(levels) and self._levels_done(levels[len(formed)]):
                nbody = levels[len(formed)]
                formed[nbody] = self._level(nbody)
                report_level(formed[nbody])
        given = graph.analysis
        partials = [self.totals[nbody] for nbody in sorted(self.totals)]
        return tree.outcome(
            given.normalized,
            given.analyses[tree.WHOLE],
            given.order,
            list(formed.values()),
            *partials,
            screening=given.screening,
        )

    def _levels_done(self, nbody: int) -> bool:
        return all(left == 0 for level, left in self.remaining.items() if level <= nbody)

    def _level(self, nbody: int):
        given = self.graph.analysis
        partials = [total for level, total in sorted(self.totals.items()) if level <= nbody]
        return tree.level(given.analyses[nbody], nbody, given.level_counts[nbody], *partials)

    def _batch_ended(self, key: str, future) -> None:
        """A batch's sum is in: added to its level's total, and the batch let go (the scheduler forgets it).
        Where Dask gave up on some of its fragments, they become failures and the others give their statistics."""
        from distributed import wait

        batch, _, fragments = self.in_flight.pop(key)
        self.unfinished -= len(batch.fragments)
        self.remaining[batch.nbody] -= 1
        total = self.totals[batch.nbody]
        if future.status == "finished":
            tree.merge_into(total, future.result())
            return
        wait(list(fragments.values()))
        label_of = {d.key: label for label, d in self.graph.fragments.items() if d.key in fragments}
        lost = {label_of[k]: f for k, f in fragments.items() if f.status != "finished"}
        total.failures.extend(self.lost_failures(self.graph, lost))
        total.count += len(lost)
        done = [(label_of[k], f) for k, f in fragments.items() if f.status == "finished"]
        if done:  # statistics only: a level with a failure is not analyzed
            labels, outputs = [label for label, _ in done], [f for _, f in done]
            tree.merge_into(total, self.client.submit(tree.batch, {}, labels, False, outputs, pure=False).result())

    def held(self) -> list:
        """Every future the run still holds (what a cancel on the way out must stop)."""
        futures = list(self.parent)
        for _, sum_future, fragments in self.in_flight.values():
            futures.append(sum_future)
            futures.extend(fragments.values())
        return futures
