"""What the batch system says about our jobs: waiting (and why), running, or gone. Asked, never assumed.

A job waiting in the queue is normal on a busy cluster (for hours); only a job that ended without a worker,
a refusal, or a limit the user set ends a run. For systems whose state is not read here, ``states`` returns
None and the callers fall back to time alone.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass

#: SLURM states of a job that will still run or runs now (squeue's %T)
SLURM_ALIVE = {
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
    "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD",
}  # fmt: skip


@dataclass(frozen=True)
class JobState:
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
    if system != "slurm" or not job_ids or not shutil.which("squeue"):
        return None
    try:
        out = subprocess.run(
            ["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i|%T|%r"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 and "Invalid job id" not in out.stderr:
        return None  # the controller did not answer: unknown, not ended
    found = {}
    for line in out.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            found[parts[0]] = JobState(parts[1], parts[2])
    return found


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
