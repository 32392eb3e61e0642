"""What the batch system says about our jobs: waiting (and why), running, or gone. Asked, never assumed.

A job waiting in the queue is normal on a busy cluster (for hours); only a job that ended without a worker,
a refusal, or a limit the user set ends a run. Each system is read with its own command (:mod:`.queues`); for
systems whose state is not read here (no :attr:`.BatchSystem.read_states`), ``states`` returns None and the
callers fall back to time alone.
"""

from __future__ import annotations

from collections import Counter

from qcmb_dask.clusters.batch_systems import SYSTEMS
from qcmb_dask.clusters.queues import JobState

__all__ = ["JobState", "states", "summary"]


def states(system: str, job_ids: list[str]) -> dict[str, JobState] | None:
    """job id -> state for the jobs the batch system still lists (an ended job may be missing); None where this
    system's queue is not read here or cannot be asked now."""
    read = SYSTEMS[system].read_states if system in SYSTEMS else None
    if read is None or not job_ids:
        return None
    return read(job_ids)


def summary(found: dict[str, JobState], job_ids: list[str]) -> str:
    """``2 pending (Resources), 1 running`` for the jobs asked about."""
    pending = Counter(found[j].reason or found[j].state for j in job_ids if j in found and found[j].pending)
    running = sum(1 for j in job_ids if j in found and found[j].running)
    parts = []
    if pending:
        reasons = ", ".join(f"{n} {reason}" if len(pending) > 1 else reason for reason, n in pending.most_common())
        parts.append(f"{sum(pending.values())} pending ({reasons})")
    if running:
        parts.append(f"{running} running")
    gone = sum(1 for j in job_ids if j not in found or not found[j].alive)
    if gone:
        parts.append(f"{gone} ended")
    return ", ".join(parts) or "none listed"
