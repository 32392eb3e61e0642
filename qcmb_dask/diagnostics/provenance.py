"""How a result was made, kept in the result: ``result.extras["qcmb_dask"]`` (QCSchema's place for a program's own
data), so that a saved result still says where it ran, what came from the store, and when each level was ready.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qcmb_dask.diagnostics.runlog import RunLog

#: the key in ``extras``
EXTRAS_KEY = "qcmb_dask"
#: the most fragments whose timeline a result keeps as one dict each; a larger run's is kept as columns (a list
#: per field), a fifth of the memory and of the saved file
TIMELINE_ROWS = 100_000


def run_record(
    *,
    run_id: str,
    cluster: Mapping[str, Any],
    stats,
    store_root,
    began: float,
    log: RunLog | None,
    level_labels: Mapping[int, Sequence[str]],
) -> dict[str, Any]:
    """The ``extras["qcmb_dask"]`` block of one run (plain JSON types only).

    ``began`` is the epoch second the call began. Per level: ``ready_s``, seconds from the start until the last
    calculation it needs ended; ``reported_s``, until its result reached the caller.
    """
    import qcmb_dask

    levels = {}
    for nbody, labels in sorted(level_labels.items()):
        ready = log.last_stop(labels) if log is not None and labels else None
        reported = log.level_reported.get(nbody) if log is not None else None
        levels[str(nbody)] = {
            "ncalculations": len(labels),
            "ready_s": round(ready - began, 3) if ready is not None else None,
            "reported_s": round(reported - began, 3) if reported is not None else None,
        }
    if log is None:
        timeline: list | dict = []
    else:
        timeline = list(log.records) if len(log.records) <= TIMELINE_ROWS else log.columns()
    return {
        "version": qcmb_dask.__version__,
        "run_id": run_id,
        "cluster": dict(cluster),
        "computed": stats.computed,
        "from_store": stats.from_store,
        "store": str(store_root) if store_root is not None else None,
        "started": began,
        "wall_time_s": round(time.time() - began, 3),
        "levels": levels,
        "timeline": timeline,
    }


def with_record(result, record: Mapping[str, Any]):
    """A copy of a ManyBodyResult (v1 or v2) or a PartialResult whose ``extras`` hold ``record`` under
    :data:`EXTRAS_KEY`."""
    import dataclasses

    extras = dict(result.extras or {})
    extras[EXTRAS_KEY] = {**(extras.get(EXTRAS_KEY) or {}), **record}  # the analysis may have put some there
    if hasattr(result, "model_copy"):
        return result.model_copy(update={"extras": extras})
    if dataclasses.is_dataclass(result):
        return dataclasses.replace(result, extras=extras)
    return result.copy(update={"extras": extras})


def record_of(result) -> dict[str, Any] | None:
    """The ``extras["qcmb_dask"]`` block of a result: a ManyBodyResult, a PartialResult, a dict, or a saved file."""
    if isinstance(result, (str, Path)):
        from qcmb_dask.diagnostics.results import load

        result = load(result)
    extras = result.get("extras") if isinstance(result, Mapping) else getattr(result, "extras", None)
    return (extras or {}).get(EXTRAS_KEY)
