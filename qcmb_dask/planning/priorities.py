"""The order fragments start in: early levels first where that costs the makespan little, longest first otherwise.

Longest-processing-time-first (LPT) keeps the makespan near its bound, but it runs the big high-level
fragments first, so the 1- and 2-body results, which a user reads while the rest runs, arrive only at the
end. Running the cheap low levels first delivers them early; it costs the makespan only where their work is a
large share of the whole (a multi-level input with CCSD(T) monomers, say). Which levels go first is decided
by simulating both orders on the plan's cost estimates for the workers the run has: the largest prefix of
levels whose simulated makespan stays within :data:`TOLERANCE` of plain LPT's.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

#: the simulated makespan an early level may cost, relative to plain longest-first (the default of
#: ``qcmb_dask.early-levels-tolerance``)
TOLERANCE = 0.02


def simulated_makespan(costs: Sequence[float], workers: int) -> float:
    """List scheduling in the given order: each task starts on the first worker free."""
    free = [0.0] * max(1, workers)
    for cost in costs:
        heapq.heapreplace(free, free[0] + cost)
    return max(free)


def levels_first(costs_by_level: dict[int, list[float]], workers: int, tolerance: float | None = None) -> int:
    """The highest level k such that running every fragment of levels <= k first (each level longest-first, in
    level order), then the rest longest-first, simulates within ``tolerance`` of longest-first overall; 0 when
    no level can go first at that price, or ``tolerance`` is 0 (longest first throughout: on real durations,
    which the estimates only approach, even an early level that costs nothing simulated costs a little)."""
    tolerance = TOLERANCE if tolerance is None else tolerance
    levels = sorted(costs_by_level)
    everything = sorted((c for cs in costs_by_level.values() for c in cs), reverse=True)
    if len(levels) < 2 or not everything or tolerance == 0:
        return 0
    limit = simulated_makespan(everything, workers) * (1 + tolerance)
    chosen = 0
    for k in levels[:-1]:
        early = [c for level in levels if level <= k for c in sorted(costs_by_level[level], reverse=True)]
        rest = sorted((c for level in levels if level > k for c in costs_by_level[level]), reverse=True)
        if simulated_makespan(early + rest, workers) <= limit:
            chosen = k
    return chosen


def ranks(tasks: Sequence, workers: int, tolerance: float | None = None) -> dict[str, int]:
    """label -> priority (higher starts first) for plan tasks (``label``, ``nbody``, ``cost``); ``tolerance``: as
    :func:`levels_first`'s (default :data:`TOLERANCE`)."""
    costs_by_level: dict[int, list[float]] = {}
    for task in tasks:
        costs_by_level.setdefault(task.nbody, []).append(task.cost)
    early = levels_first(costs_by_level, workers, tolerance)
    # Sort keys: early levels before the rest, lower levels first among the early ones, then longest first.
    order = sorted(
        tasks,
        key=lambda t: (0, t.nbody, -t.cost) if t.nbody <= early else (1, 0, -t.cost),
    )
    return {task.label: len(order) - i for i, task in enumerate(order)}
