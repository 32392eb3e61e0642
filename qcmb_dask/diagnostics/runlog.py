"""The run log: one object per run that counts, estimates and remembers; it never changes a result."""

from __future__ import annotations

import math
import time
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from qcmb_dask.planning.cost import duration

#: the fields of a timeline record, in the order a record dict has them
FIELDS = ("label", "nbody", "ok", "from_store", "start", "stop", "worker")
_OK, _FROM_STORE = 1, 2


class RunLog:
    """What a run learned, in one place: fragments done per level, an ETA from the plan's cost estimates at the
    pace seen so far, and one record per finished fragment (the timeline). The displays draw it, ``timeline()``
    returns its records, the cost history learns from them.

    A run of a million fragments keeps a million records: they are held as columns of machine numbers (about
    60 bytes a fragment, the labels shared with the plan), and :attr:`records` makes each dict when it is read.
    """

    def __init__(self, level_sizes: dict[int, int], costs: Mapping[str, float]):
        self.total = dict(level_sizes)
        self.done = {nbody: 0 for nbody in level_sizes}
        self.failed = 0
        self.from_store = 0
        self.started = time.time()
        #: n-body level -> when its result reached this process (epoch s)
        self.level_reported: dict[int, float] = {}
        # per fragment, by its position among the planned ones (a label reported but not planned is added)
        self._labels: list[str] = list(costs)
        self._position: dict[str, int] = {label: i for i, label in enumerate(self._labels)}
        self._cost = array("d", costs.values())
        self._ended = bytearray(len(self._labels))
        self.total_cost = sum(self._cost) or 1.0
        self.done_cost = 0.0
        # per record, in the order the fragments ended
        self._order = array("q")
        self._nbody = array("H")
        self._flags = bytearray()
        self._start = array("d")
        self._stop = array("d")
        self._worker = array("I")
        self._workers: list[str | None] = [None]
        self._worker_index: dict[str | None, int] = {None: 0}
        self._stop_of = array("d", [math.nan]) * len(self._labels)

    @property
    def ndone(self) -> int:
        return sum(self.done.values())

    @property
    def ntotal(self) -> int:
        return sum(self.total.values())

    @property
    def records(self) -> Records:
        """One dict per finished fragment, in the order they ended: label, nbody, ok, from_store, start, stop
        (epoch s, None where not known), worker."""
        return Records(self)

    def add(
        self,
        label: str,
        nbody: int,
        ok: bool = True,
        from_store: bool = False,
        start: float | None = None,
        stop: float | None = None,
        worker: str | None = None,
    ) -> bool:
        """Count a finished fragment once (a fragment whose worker was lost may end twice)."""
        position = self._position.get(label)
        if position is None:
            position = self._planned(label)
        elif self._ended[position]:
            return False
        self._ended[position] = 1
        self._order.append(position)
        self._nbody.append(nbody)
        self._flags.append((_OK if ok else 0) | (_FROM_STORE if from_store else 0))
        self._start.append(math.nan if start is None else start)
        self._stop.append(math.nan if stop is None else stop)
        self._stop_of[position] = math.nan if stop is None else stop
        index = self._worker_index.get(worker)
        if index is None:
            index = self._worker_index[worker] = len(self._workers)
            self._workers.append(worker)
        self._worker.append(index)
        self.done[nbody] = self.done.get(nbody, 0) + 1
        self.failed += not ok
        self.from_store += bool(from_store)
        self.done_cost += self._cost[position]
        return True

    def _planned(self, label: str) -> int:
        position = self._position[label] = len(self._labels)
        self._labels.append(label)
        self._cost.append(0.0)
        self._ended.append(0)
        self._stop_of.append(math.nan)
        return position

    def record(self, i: int) -> dict[str, Any]:
        flags = self._flags[i]
        start, stop = self._start[i], self._stop[i]
        return {
            "label": self._labels[self._order[i]],
            "nbody": self._nbody[i],
            "ok": bool(flags & _OK),
            "from_store": bool(flags & _FROM_STORE),
            "start": None if math.isnan(start) else start,
            "stop": None if math.isnan(stop) else stop,
            "worker": self._workers[self._worker[i]],
        }

    def columns(self) -> dict[str, list]:
        """The records as one list per field (what a large run's result keeps: a fraction of the dicts' size)."""
        labels, workers = self._labels, self._workers
        return {
            "label": [labels[p] for p in self._order],
            "nbody": self._nbody.tolist(),
            "ok": [bool(f & _OK) for f in self._flags],
            "from_store": [bool(f & _FROM_STORE) for f in self._flags],
            "start": [None if math.isnan(t) else t for t in self._start],
            "stop": [None if math.isnan(t) else t for t in self._stop],
            "worker": [workers[w] for w in self._worker],
        }

    def last_stop(self, labels: Iterable[str]) -> float | None:
        """When the last of ``labels`` ended (epoch s); None unless every one of them ended at a known time."""
        latest = None
        for label in labels:
            position = self._position.get(label)
            stop = math.nan if position is None else self._stop_of[position]
            if math.isnan(stop):
                return None
            latest = stop if latest is None or stop > latest else latest
        return latest

    def eta(self) -> float | None:
        """Seconds left: estimated cost still to run, at the rate cost was done so far; None before any."""
        if self.done_cost <= 0 or self.ndone >= self.ntotal:
            return None if self.ndone < self.ntotal else 0.0
        elapsed = time.time() - self.started
        return elapsed * (self.total_cost - self.done_cost) / self.done_cost

    def line(self) -> str:
        levels = " | ".join(f"{n}-body {self.done[n]}/{self.total[n]}" for n in sorted(self.total) if self.total[n])
        eta = self.eta()
        eta_text = "" if eta is None else f", ETA {duration(eta)}"
        failed = f", {self.failed} failed" if self.failed else ""
        return f"qcmb_dask: {levels} | {self.ndone}/{self.ntotal} done{failed}{eta_text}"


class Records(Sequence):
    """A run log's records as a sequence of dicts, each made when read (a view: it grows with the log)."""

    def __init__(self, log: RunLog):
        self._log = log

    def __len__(self) -> int:
        return len(self._log._order)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._log.record(j) for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(i)
        return self._log.record(i % n)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for i in range(len(self)):
            yield self._log.record(i)


def rows(timeline: Sequence[dict] | Mapping[str, list] | None) -> list[dict[str, Any]]:
    """A result's timeline as one dict per fragment, whether it was kept as dicts or (a large run) as columns."""
    if not timeline:
        return []
    if isinstance(timeline, Mapping):
        return [dict(zip(FIELDS, values)) for values in zip(*(timeline[field] for field in FIELDS))]
    return list(timeline)


#: The log of the last compute in this process: the one process-wide reference, for timeline()'s no-argument
#: form. Each compute's own log lives in its reporter; nothing reads this but :func:`last`.
_last: list[RunLog] = []


def remember(log: RunLog | None) -> None:
    _last[:] = [log] if log is not None else []


def last() -> RunLog | None:
    return _last[0] if _last else None
