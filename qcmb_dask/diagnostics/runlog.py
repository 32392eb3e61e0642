"""The run log: one object per run that counts, estimates and remembers; it never changes a result."""

from __future__ import annotations

import time
from typing import Any

from qcmb_dask.planning.cost import duration


class RunLog:
    """What a run learned, in one place: fragments done per level, an ETA from the plan's cost estimates at the
    pace seen so far, and one record per finished fragment (the timeline). The displays draw it, ``timeline()``
    returns its records, the cost history learns from them."""

    def __init__(self, level_sizes: dict[int, int], costs: dict[str, float]):
        self.total = dict(level_sizes)
        self.done = {nbody: 0 for nbody in level_sizes}
        self.failed = 0
        self.from_store = 0
        self.costs = costs
        self.total_cost = sum(costs.values()) or 1.0
        self.done_cost = 0.0
        self.started = time.time()
        self.seen: set = set()
        #: one dict per finished fragment: label, nbody, ok, from_store, start, stop (epoch s), worker
        self.records: list[dict[str, Any]] = []
        #: n-body level -> when its result reached this process (epoch s)
        self.level_reported: dict[int, float] = {}

    @property
    def ndone(self) -> int:
        return sum(self.done.values())

    @property
    def ntotal(self) -> int:
        return sum(self.total.values())

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
        if label in self.seen:
            return False
        self.records.append(
            {"label": label, "nbody": nbody, "ok": ok, "from_store": from_store, "start": start, "stop": stop,
             "worker": worker}
        )  # fmt: skip
        self.seen.add(label)
        self.done[nbody] = self.done.get(nbody, 0) + 1
        self.failed += not ok
        self.from_store += bool(from_store)
        self.done_cost += self.costs.get(label, 0.0)
        return True

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


#: The log of the last compute in this process: the one process-wide reference, for timeline()'s no-argument
#: form. Each compute's own log lives in its reporter; nothing reads this but :func:`last`.
_last: list[RunLog] = []


def remember(log: RunLog | None) -> None:
    _last[:] = [log] if log is not None else []


def last() -> RunLog | None:
    return _last[0] if _last else None
