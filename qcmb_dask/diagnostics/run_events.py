"""The reading half of the run's events: fragment ends the workers logged, and what the client publishes.

The client publishes the run (levels and their sizes) and each k-body result as it arrives as scheduler
metadata under :data:`qcmb_dask.keys.METADATA_ROOT`, so the page shows energies computed on workers. Imported
on the scheduler by the live page: it imports no client code.
"""

from __future__ import annotations

import contextlib
from typing import Any

from qcmb_dask.keys import METADATA_ROOT


def fragment_records(events: list, run: str | None = None) -> list[dict[str, Any]]:
    """The fragment records of one run from ``client.get_events(FRAGMENT_TOPIC)`` (or the scheduler's log)."""
    records = [record for _, batch in events for record in unbatch(batch) if run is None or record.get("run") == run]
    # A fragment that ran twice (its worker was lost after it finished) counts once: its last end.
    latest = {}
    for record in records:
        latest[record["label"]] = record
    return list(latest.values())


def unbatch(batch: Any) -> list[dict[str, Any]]:
    """The records of one event (a worker's batch)."""
    # a list sent by the worker arrives as a tuple (msgpack)
    return [record for record in batch if isinstance(record, dict)] if isinstance(batch, (list, tuple)) else []


def publish_run(
    client,
    run_id: str,
    level_sizes: dict,
    bsse_types,
    started: float,
    inputs: int = 1,
    placement: dict | None = None,
) -> None:
    """The run, for the page: its id, its levels and their sizes, its BSSE treatments, when it started, how
    many inputs it expands, and how many fragments go to CPU and GPU workers and why (``placement``)."""
    value = {"run": run_id, "levels": level_sizes, "bsse_types": list(bsse_types), "started": started}
    publish(client, [run_id, "run"], {**value, "inputs": inputs, "placement": placement})


def publish_level(client, run_id: str, level, bsse_types) -> None:
    """A k-body result, for the page, as it arrives (a level that could not be assembled is not published)."""
    if not hasattr(level, "interaction_energy"):  # LevelIncomplete
        return
    value = {
        "nbody": level.nbody,
        "interaction_energies": {bt: level.interaction_energy(bt) for bt in bsse_types},
        "return_energy": level.return_energy,
    }
    publish(client, [run_id, f"level-{level.nbody}"], value)


def publish(client, path: list[str], value: Any) -> None:
    """Client side: put what the page shows on the scheduler, under ``METADATA_ROOT / runs / <run> / ...`` (best
    effort: a page is never worth a failed run)."""
    with contextlib.suppress(Exception):  # the scheduler may be closing; the run does not depend on this
        client.set_metadata([METADATA_ROOT, RUNS, *path], value)


#: scheduler metadata ``[METADATA_ROOT, RUNS, run id]`` holds a run's description and its level results
RUNS = "runs"


def runs_published(scheduler) -> dict[str, dict]:
    """Scheduler side: run id -> {"run": description, "level-<k>": result, ...}."""
    return scheduler.get_metadata([METADATA_ROOT, RUNS], default={}) or {}
