"""What the batch system says about our jobs: waiting (and why), running, or gone. Asked, never assumed.

A job waiting in the queue is normal on a busy cluster (for hours); only a job that ended without a worker,
a refusal, or a limit the user set ends a run. For systems whose state is not read here (no
:attr:`.BatchSystem.read_states`), ``states`` returns None and the callers fall back to time alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from qcmb_dask.clusters.batch_systems import SYSTEMS

#: SLURM states of a job that will still run or runs now (squeue's %T)
SLURM_ALIVE = {
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
    "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD",
}  # fmt: skip


@dataclass(frozen=True)
class JobState:
    """A job as the batch system lists it, in SLURM's words: a reader of another system would translate to them."""

    state: str  # the batch system's word: PENDING, RUNNING, ...
    reason: str  # why it waits (squeue's %r: Priority, Resources, QOSMaxJobsPerUser, ...), or "None"

    @property
    def alive(self) -> bool:
        return self.state in SLURM_ALIVE

    @property
    def pending(self) -> bool:
        return self.state == "PENDING"


def states(system: str, job_ids: list[str]) -> dict[str, JobState] | None:
    """job id -> state for the jobs the batch system still lists (an ended job may be missing); None where this
    system's queue is not read here or cannot be asked now."""
    read = SYSTEMS[system].read_states if system in SYSTEMS else None
    if read is None or not job_ids:
        return None
    found = read(job_ids)
    return None if found is None else {job_id: JobState(state, reason) for job_id, (state, reason) in found.items()}


def summary(found: dict[str, JobState], job_ids: list[str]) -> str:
    """``2 pending (Resources), 1 running`` for the jobs asked about."""
    pending = Counter(found[j].reason for j in job_ids if j in found and found[j].pending)
    running = sum(1 for j in job_ids if j in found and found[j].state == "RUNNING")
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
