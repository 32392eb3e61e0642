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

Where Dask gave up on a fragment (its worker died on every try, or it timed out), its batch's sum fails: once the
batch's other fragments are done (the stream goes on meanwhile), they give their statistics, the lost one becomes
a failure of its level, and every other batch still runs and is stored. Levels with a failure are incomplete; the
outcome lists every failure. A sum that failed with every fragment done (its worker lost) is computed once more.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

from qcmb_dask.graph import Batch, MBEGraph, annotations_for
from qcmb_dask.options import setting
from qcmb_dask.worker import tree
from qcmb_dask.worker.analysis import Outcome

#: how often the window re-reads the cluster's thread count (workers join and leave)
THREADS_REFRESH_S = 2.0


@dataclass
class _InFlight:
    """A batch sent and not yet added to its level's total."""

    batch: Batch
    sum_future: object
    fragments: dict  # fragment key -> its future
    unfinished: set = field(default_factory=set)  # fragment keys not yet done
    #: its sum failed: waiting for its fragments, then for what replaces the sum
    failed: bool = False
    replacement: object = None


class Stream:
    """One graph, submitted part by part on ``client``; :meth:`run` gives its :class:`Outcome`."""

    def __init__(self, client, graph: MBEGraph, task_resources: dict | None, lost_failures: Callable):
        self.client, self.graph, self.task_resources = client, graph, task_resources
        #: (graph, {label: erred future}) -> FragmentErrors for fragments Dask gave up on
        self.lost_failures = lost_failures
        self.batch_size = max(1, int(setting("stream.batch-size", 500)))
        self.ahead = max(1.0, float(setting("stream.ahead", 4)))
        self.names = itertools.count()
        self.in_flight: dict[str, _InFlight] = {}  # by sum key
        self.owner: dict[str, _InFlight] = {}  # unfinished fragment key -> its batch
        self.replacing: dict[str, _InFlight] = {}  # key of a failed sum's replacement -> its batch
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
            self._threads = int(self.client.scheduler_info(n_workers=0).get("total_threads", 0))
            self._threads_read = time.monotonic()
        return max(2 * self.batch_size, int(self.ahead * self._threads))

    def _submit(self, keys: Iterable[str], wanted: Iterable[str]) -> list:
        """Send ``keys``' tasks (what they read is among them or was sent before); the futures of ``wanted``."""
        name = f"qcmb-dask-part-{next(self.names)}-{self.graph.run_id}"
        layer = {key: self.graph.tasks[key] for key in keys}
        hlg = HighLevelGraph(
            {name: MaterializedLayer(layer, annotations=annotations_for(self.graph, layer))}, {name: set()}
        )
        # one graph per call, not a Delayed per key: the scheduler's span keeps a note per collection it was given
        return self.client.get(hlg, list(wanted), sync=False, resources=self.task_resources)

    def _submit_batch(self, batch: Batch, completed) -> None:
        futures = self._submit((*batch.keys, batch.sum_key), (*batch.fragments, batch.sum_key))
        state = _InFlight(batch, futures[-1], dict(zip(batch.fragments, futures[:-1])), set(batch.fragments))
        self.in_flight[batch.sum_key] = state
        for key in batch.fragments:
            self.owner[key] = state
        self.unfinished += len(batch.fragments)
        completed.update(futures)

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
            key = future.key
            if key in self.owner:
                self._fragment_ended(key, completed)
            elif key in self.in_flight:
                self._sum_ended(self.in_flight[key], future, completed)
            elif key in self.replacing:
                self._replacement_ended(self.replacing[key], future, completed)
            fill()
            while len(formed) < len(levels) and self._levels_done(levels[len(formed)]):
                nbody = levels[len(formed)]
                formed[nbody] = self._level(nbody)
                report_level(formed[nbody])
        given = graph.analysis
        partials = [self.totals[nbody] for nbody in sorted(self.totals)]
        summed, expected = sum(p.count for p in partials), sum(len(b.fragments) for b in graph.batches)
        if summed != expected:  # never a result without every batch: a guard for what the cases above missed
            raise RuntimeError(f"qcmb_dask: {summed} of {expected} calculations were summed; the run has no result")
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

    def _fragment_ended(self, key: str, completed) -> None:
        state = self.owner.pop(key)
        state.unfinished.discard(key)
        self.unfinished -= 1
        if state.failed and not state.unfinished:
            self._replace_sum(state, completed)

    def _sum_ended(self, state: _InFlight, future, completed) -> None:
        """A batch's sum is in: added to its level's total, and the batch let go (the scheduler forgets it). A
        failed one waits for the batch's fragments (the stream goes on) and is then replaced."""
        if future.status == "lost":  # its worker died after it finished: Dask computes it again, and it comes back
            completed.add(future)
            return
        if future.status == "finished":
            self._finish(state, future.result())
            return
        _raise_if_gone(future)
        state.failed = True
        if not state.unfinished:
            self._replace_sum(state, completed)

    def _replace_sum(self, state: _InFlight, completed) -> None:
        """Every fragment of a batch whose sum failed is done: fragments Dask gave up on become failures, and the
        others give their statistics; with none lost, the sum itself failed (its worker died): it runs again."""
        batch = state.batch
        for future in state.fragments.values():
            _raise_if_gone(future)
        labels = dict(zip(batch.fragments, batch.labels))
        lost = {labels[k]: f for k, f in state.fragments.items() if f.status == "error"}
        done = [(labels[k], f) for k, f in state.fragments.items() if f.status in COMPUTED]
        given = self.graph.analysis
        if lost:
            self.totals[batch.nbody].failures.extend(self.lost_failures(self.graph, lost))
            self.totals[batch.nbody].count += len(lost)
            analyses, keep_each, weights = {}, False, None  # statistics only: a level with a failure is not formed
        else:
            analyses, keep_each, weights = given.analyses, bool(given.order), batch.weights
        if not done:
            self._finish(state, tree.Partial())
            return
        replacement = self.client.submit(
            tree.batch, analyses, [label for label, _ in done], keep_each, [f for _, f in done], weights, pure=False
        )
        state.replacement = replacement
        self.replacing[replacement.key] = state
        completed.add(replacement)

    def _replacement_ended(self, state: _InFlight, future, completed) -> None:
        if future.status == "lost":
            completed.add(future)
            return
        del self.replacing[future.key]
        if future.status != "finished":
            raise future.exception()  # the analysis itself fails: the run says so, as a whole graph's would
        self._finish(state, future.result())

    def _finish(self, state: _InFlight, partial: tree.Partial) -> None:
        batch = state.batch
        tree.merge_into(self.totals[batch.nbody], partial)
        self.remaining[batch.nbody] -= 1
        self.in_flight.pop(batch.sum_key, None)
        for key in state.unfinished:  # a sum can be in before the ends of its fragments reach this client
            self.owner.pop(key, None)
            self.unfinished -= 1
        state.unfinished.clear()

    def held(self) -> list:
        """Every future the run still holds (what a cancel on the way out must stop)."""
        futures = list(self.parent)
        for state in self.in_flight.values():
            futures.append(state.sum_future)
            futures.extend(state.fragments.values())
            if state.replacement is not None:
                futures.append(state.replacement)
        return futures


#: a future's statuses that mean its result exists: one Dask lost with its worker after it finished is computed
#: again, and reading it waits for that
COMPUTED = ("finished", "lost")


def _raise_if_gone(future) -> None:
    """A future neither finished nor failed was cancelled, or lost with the scheduler: the run cannot go on
    (its sum would be missing); its own error says which. One lost with its worker is not gone: Dask computes it
    again from what it was made of."""
    if future.status not in ("finished", "error", "pending", "lost"):
        from concurrent.futures import CancelledError

        raise CancelledError(f"qcmb_dask: {future.key} was {future.status} (the scheduler gone, or a cancel)")
