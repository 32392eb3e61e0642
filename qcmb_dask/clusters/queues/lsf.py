"""LSF's view: ``bjobs -noheader -o "jobid stat pend_reason delimiter='|'" <ids>`` (LSF 10.1's custom format).

One line a job, ``5101|PEND|New job is waiting for scheduling``; LSF prints ``-`` for an empty field. A job LSF no
longer knows (its CLEAN_PERIOD passed) gives ``Job <5199> is not found`` on stderr and a non-zero exit: an answer,
and the other ids' lines still count.
"""

from __future__ import annotations

from qcmb_dask.clusters.queues import ENDED, PENDING, RUNNING, JobState, run

#: a job that waits: PEND, held (PSUSP: suspended while pending), WAIT (a chunk job's member waiting its turn)
_PENDING = {"PEND", "PSUSP", "WAIT"}
#: a job that has its host: running, or suspended in place by its user (USUSP) or by LSF (SSUSP)
_RUNNING = {"RUN", "USUSP", "SSUSP"}
#: the host running it lost contact with LSF: not ended, whatever it may turn out to be
_UNKNOWN = "UNKWN"
#: DONE, EXIT, ZOMBI (killed, its end not yet reported) and anything else: ended

FORMAT = "jobid stat pend_reason delimiter='|'"


def state_of(state: str, reason: str) -> JobState:
    reason = "" if reason.strip() == "-" else reason.strip().rstrip(";")
    if state in _PENDING:
        phase = PENDING
        reason = reason or ("held" if state == "PSUSP" else "")
    elif state in _RUNNING:
        phase = RUNNING
    elif state == _UNKNOWN:
        phase = RUNNING
        reason = "its host lost contact with LSF (UNKWN): not ended yet"
    else:
        phase = ENDED
    return JobState(state, phase, reason)


def parse(text: str) -> dict[str, JobState]:
    """job id -> state, from ``bjobs -noheader -o "jobid stat pend_reason delimiter='|'"`` output."""
    found = {}
    for line in text.splitlines():
        parts = line.strip().split("|", 2)
        if len(parts) == 3 and parts[0] and parts[1]:
            found[parts[0]] = state_of(parts[1], parts[2])
    return found


def read(job_ids: list[str]) -> dict[str, JobState] | None:
    out = run(["bjobs", "-noheader", "-o", FORMAT, *job_ids], accept_failure="is not found")
    return None if out is None else parse(out)
