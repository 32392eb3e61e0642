"""Grid Engine's view (Son of Grid Engine, Univa/Altair, Open Cluster Scheduler): ``qstat -xml -u '*'`` for the
states, then ``qstat -j <ids>`` for why the pending ones wait and why the ones in error will not run.

SGE's state is a string of letters (``qw``, ``hqw``, ``r``, ``t``, ``Rr``, ``s``, ``dr``, ``Eqw``, ...): d is
being deleted, E in error (it will not run until an administrator clears it), h held, q queued, w waiting,
r running, t being transferred to its host, R restarted (rescheduled after a node failure or a ``qmod -rj``),
s/S/T suspended (by the user, by a subordinate queue, at a load threshold).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from qcmb_dask.clusters.queues import ENDED, PENDING, RUNNING, JobState, run

#: what ``qstat -j`` says where it has no reason: the scheduler keeps no per-job messages (schedd_job_info false,
#: the default), or has not looked at the job yet
_NO_INFO = ("Collecting of scheduler job information is turned off", "There are no messages available")
#: a scheduling-info line about one queue instance (``queue instance "all.q@node1" dropped because it is full``);
#: a cluster of many hosts lists one a host, so only the lines about the job as a whole are kept
_ONE_QUEUE = re.compile(r'queue(?: instance)? "[^"]*@[^"]*"')
_KEY = re.compile(r"^([A-Za-z_][A-Za-z_ ]*?)(?:\s+\d+)?:\s*(.*)$")


def state_of(state: str, reason: str = "") -> JobState:
    """SGE's letters -> our phase. Deletion and error first: ``dr`` still runs, but is on its way out."""
    if any(letter in state for letter in "dEz"):  # z: finished, listed only by ``qstat -s z``
        phase = ENDED
    elif any(letter in state for letter in "rtsST"):
        phase = RUNNING
    else:  # qw, hqw, hRwq, Rq
        phase = PENDING
    if not reason and phase == PENDING and "h" in state:
        reason = "Job is in hold state"  # SGE's words, where it keeps no scheduling info
    return JobState(state, phase, reason, preempted="R" in state)


def parse(text: str) -> dict[str, JobState]:
    """job id -> state, from ``qstat -xml`` output (running jobs, then pending ones; an array job's tasks share
    its id: the most alive of them stands for it). Raises ``xml.etree.ElementTree.ParseError`` on malformed XML."""
    order = {RUNNING: 0, PENDING: 1, ENDED: 2}
    found: dict[str, JobState] = {}
    for job in ET.fromstring(text).iter("job_list"):
        job_id, state = job.findtext("JB_job_number"), job.findtext("state")
        if not job_id or not state:
            continue
        new = state_of(state.strip())
        old = found.get(job_id.strip())
        if old is None or order[new.phase] < order[old.phase]:
            found[job_id.strip()] = new
    return found


def parse_reasons(text: str) -> dict[str, str]:
    """job id -> why it waits or will not run, from ``qstat -j <ids>``: its ``error reason`` where it has one, else
    its ``scheduling info`` lines about the job as a whole, joined with "; "."""
    reasons: dict[str, str] = {}
    job_id, key, fields = None, None, {}

    def close():
        if job_id is None:
            return
        error = " ".join(fields.get("error reason", []))
        if error:  # "12/04/2026 21:43:34 [0:12775]: error: can't chdir to /x: No such file or directory"
            reasons[job_id] = error.split("]: ", 1)[-1].strip()
            return
        lines = [line for line in fields.get("scheduling info", []) if line and not any(n in line for n in _NO_INFO)]
        general = [line for line in lines if not _ONE_QUEUE.search(line)] or lines[:1]
        reasons[job_id] = "; ".join(dict.fromkeys(general))

    for line in text.splitlines():
        if line.startswith("====="):
            close()
            job_id, key, fields = None, None, {}
        elif line[:1].isspace():  # a continuation of the field above
            if key is not None:
                fields[key].append(line.strip())
        elif match := _KEY.match(line):
            key, value = match.group(1).strip(), match.group(2).strip()
            fields.setdefault(key, []).append(value)
            if key == "job_number":
                job_id = value
    close()
    return reasons


def read(job_ids: list[str]) -> dict[str, JobState] | None:
    out = run(["qstat", "-xml", "-u", "*"])
    if out is None:
        return None
    try:
        listed = parse(out)
    except ET.ParseError:
        return None
    found = {job_id: listed[job_id] for job_id in job_ids if job_id in listed}
    # why: for the jobs that wait, or that will not run (a job gone in between is simply not described)
    ask = [job_id for job_id, state in found.items() if state.pending or "E" in state.state]
    details = run(["qstat", "-j", ",".join(ask)], accept_failure="do not exist") if ask else None
    for job_id, reason in parse_reasons(details or "").items():
        if job_id in found and reason:
            found[job_id] = JobState(found[job_id].state, found[job_id].phase, reason, found[job_id].preempted)
    return found
