"""PBS's view (OpenPBS, PBS Professional, Torque, and SLURM's ``qstat`` wrapper): ``qstat -f <ids>``.

``qstat -f`` prints one block a job: ``Job Id: 1234.server``, then indented ``key = value`` lines (four spaces in
OpenPBS and Torque, a tab in SLURM's wrapper), a long value folded onto lines that start with a tab, split anywhere,
even inside a word. ``-x`` (finished jobs too) is not asked: Torque's ``-x`` means XML. A job PBS no longer lists
makes qstat print ``qstat: Unknown Job Id 1234.server`` and exit 153 (PBSE_UNKJOBID, 15001, modulo 256); where job
history is kept, a finished one makes it print ``qstat: 1234.server Job has finished, use -x or -H ...`` and exit
35. Both are answers, and the other ids' blocks still count; the wrapper prints nothing at all for an unknown id,
with 153 as well.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from qcmb_dask.clusters.queues import ENDED, PENDING, RUNNING, JobState

#: job_state of a job that waits: Queued, Held, Waiting for its start time, in Transit to another queue
_PENDING = {"Q", "H", "W", "T"}
#: job_state of a job whose node it holds: Running, Exiting (until it leaves), Suspended, User-suspended (a busy
#: workstation), Begun (an array with subjobs running)
_RUNNING = {"R", "E", "S", "U", "B"}
#: the rest: Finished and eXpired subjobs (OpenPBS, with -x), Completed (Torque and SLURM's wrapper), Moved to
#: another server (this server lists it as history only)

#: qstat's exit status for an unknown job id, the only answer SLURM's wrapper gives for one
_UNKNOWN_EXIT = 153
#: what qstat says on stderr of a job it no longer lists: an answer, not a failure to ask
_ANSWERS = ("Unknown Job Id", "Job has finished")

_JOB_ID = re.compile(r"^Job Id:\s*(\S+)")
_ATTRIBUTE = re.compile(r"^(\s+)([A-Za-z_][\w.\-]*) = (.*)$")
_FINISHED = re.compile(r"^qstat: (\S+) Job has finished")


def state_of(attributes: dict[str, str]) -> JobState:
    """One job's state from its ``qstat -f`` attributes (keys as PBS spells them)."""
    state = attributes.get("job_state", "")
    comment = attributes.get("comment", "")
    exit_status = attributes.get("Exit_status", attributes.get("exit_status", ""))
    if state in _PENDING:
        phase, reason = PENDING, comment  # OpenPBS: "Not Running: Insufficient amount of resource: ncpus (...)"
    elif state in _RUNNING:
        phase, reason = RUNNING, comment if state in ("S", "U") else ""  # a running job's comment says only where
    else:
        phase = ENDED
        reason = "; ".join(part for part in (f"Exit_status {exit_status}" if exit_status else "", comment) if part)
    # queued again after it ran: requeued after a preemption or a node failure
    preempted = phase == PENDING and attributes.get("run_count", "0").strip() not in ("", "0")
    return JobState(state, phase, reason, preempted)


def parse(text: str) -> dict[str, JobState]:
    """job id as qstat prints it -> state, from ``qstat -f`` output (and its stderr, for finished jobs)."""
    blocks: dict[str, dict[str, str]] = {}
    found: dict[str, JobState] = {}
    attributes: dict[str, str] | None = None
    indent, key = None, None
    for line in text.splitlines():
        if match := _JOB_ID.match(line):
            attributes = blocks.setdefault(match.group(1), {})
            indent, key = None, None
        elif match := _FINISHED.match(line):
            found[match.group(1)] = JobState("F", ENDED, "Job has finished")
        elif attributes is None or not line.strip():
            continue
        elif (match := _ATTRIBUTE.match(line)) and match.group(1) == (indent or match.group(1)):
            indent, key = match.group(1), match.group(2)  # the block's first attribute sets its indent
            attributes[key] = match.group(3)
        elif line.startswith("\t") and key is not None:
            attributes[key] += line[1:]  # folded: the break may fall inside a word
    found.update({job_id: state_of(attrs) for job_id, attrs in blocks.items() if "job_state" in attrs})
    return found


def _sequence(job_id: str) -> str:
    """``1234`` of ``1234.server`` or ``1234.server.domain``: the part ids are matched by."""
    return job_id.split(".", 1)[0]


def matched(found: dict[str, JobState], job_ids: list[str]) -> dict[str, JobState]:
    """``found`` keyed by the ids asked about: qsub prints ``1234.server``, dask-jobqueue keeps the number it
    found in that, and qstat may name the server shorter or longer; the sequence number is what they share."""
    by_sequence = {_sequence(job_id): state for job_id, state in found.items()}
    answer = {}
    for job_id in job_ids:
        state = found.get(job_id) or by_sequence.get(_sequence(job_id))
        if state is not None:
            answer[job_id] = state
    return answer


def read(job_ids: list[str]) -> dict[str, JobState] | None:
    # not queues.run: an unknown or finished job's line is on stderr, and SLURM's wrapper says only its exit status
    if not shutil.which("qstat"):
        return None
    try:
        out = subprocess.run(["qstat", "-f", *job_ids], capture_output=True, text=True, timeout=30.0)
    except (OSError, subprocess.TimeoutExpired):
        return None
    answered = out.returncode in (0, _UNKNOWN_EXIT) or any(answer in out.stderr for answer in _ANSWERS)
    if not answered:
        return None
    return matched(parse(out.stdout + "\n" + out.stderr), job_ids)
