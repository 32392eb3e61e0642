"""Each batch system's own view of our jobs, read with its own command, told in one vocabulary.

One module per system, as dask-jobqueue keeps one per system: ``slurm`` (``squeue``), ``pbs`` (``qstat -f``),
``sge`` (``qstat -xml`` and ``qstat -j``), ``lsf`` (``bjobs``). Each has ``read(job_ids)`` -> ``{id: JobState}``
for the jobs the system still lists, or None where it cannot be asked now (its command missing, or not
answering: unknown, never "ended"), and pure ``parse_...`` functions the tests feed recorded outputs.
:attr:`.BatchSystem.read_states` names the reader of each system; the callers never ask a system by name.

Pure: starts nothing when imported.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

#: a job that will run (waits in the queue, held, or requeued after a preemption)
PENDING = "pending"
#: a job that runs now (or is suspended in place: its node and its workers are still there)
RUNNING = "running"
#: a job that ended: done, failed, cancelled, killed at its walltime, preempted without a requeue
ENDED = "ended"
PHASES = (PENDING, RUNNING, ENDED)


@dataclass(frozen=True)
class JobState:
    """One job as its batch system lists it: the system's own words, and what they mean here."""

    #: the system's word for the state: PENDING (SLURM), Q (PBS), qw (SGE), PEND (LSF), ...
    state: str
    #: :data:`PENDING`, :data:`RUNNING` or :data:`ENDED`
    phase: str
    #: why it waits, or why it ended, in the system's words ("Priority", "Resources", ...); "" where none is given
    reason: str = ""
    #: the system says it was preempted (or requeued after a preemption or a node failure)
    preempted: bool = False

    @property
    def alive(self) -> bool:
        return self.phase != ENDED

    @property
    def pending(self) -> bool:
        return self.phase == PENDING

    @property
    def running(self) -> bool:
        return self.phase == RUNNING


def run(command: list[str], *, accept_failure: str | None = None, timeout: float = 30.0) -> str | None:
    """The command's stdout, or None where it cannot be asked now (missing, timed out, or failed other than
    with ``accept_failure`` in its stderr: an unknown job id is an answer, a controller that is down is not)."""
    if not shutil.which(command[0]):
        return None
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 and not (accept_failure and accept_failure in out.stderr + out.stdout):
        return None
    return out.stdout
