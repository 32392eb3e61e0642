"""SLURM's view: ``squeue -h -j <ids> -o %i|%T|%r`` (state and reason, one line a job)."""

from __future__ import annotations

from qcmb_dask.clusters.queues import ENDED, PENDING, RUNNING, JobState, run

#: squeue's %T of a job that will run again or waits
_PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "CONFIGURING"}
#: squeue's %T of a job whose nodes it holds now
_RUNNING = {"RUNNING", "COMPLETING", "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED"}
#: reasons squeue gives a job put back in the queue after a preemption or a node failure
_REQUEUED_REASONS = {"BeginTime", "JobHeldAdmin"}


def state_of(state: str, reason: str) -> JobState:
    reason = "" if reason == "None" else reason
    if state in _PENDING:
        phase = PENDING
    elif state in _RUNNING:
        phase = RUNNING
    else:  # COMPLETED, FAILED, CANCELLED, TIMEOUT, PREEMPTED, NODE_FAIL, BOOT_FAIL, DEADLINE, OUT_OF_MEMORY
        phase = ENDED
    preempted = state in ("PREEMPTED", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED")
    return JobState(state, phase, reason, preempted)


def parse(text: str) -> dict[str, JobState]:
    """job id -> state, from ``squeue -h -o %i|%T|%r`` output."""
    found = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            found[parts[0]] = state_of(parts[1], parts[2])
    return found


def read(job_ids: list[str]) -> dict[str, JobState] | None:
    out = run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i|%T|%r"], accept_failure="Invalid job id")
    return None if out is None else parse(out)
