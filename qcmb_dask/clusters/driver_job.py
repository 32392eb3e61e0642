"""``qcmb-dask submit``: the run's driver as a small batch job of its own, so nothing long lives on a login node.

The driver job (one core, little memory, a long walltime, the site's own partition and account from the same
settings layers as the worker jobs) runs ``qcmb-dask run`` with the result store on a path the jobs share. It
submits the worker jobs itself, and cancels them when it ends. SLURM is asked to send SIGTERM some minutes
before the driver's walltime (``--signal=B:TERM@<s>``), LSF likewise (``-wt <minutes> -wa TERM``): the driver then
takes the Ctrl-C path, its worker jobs are cancelled and the finished fragments stay in the store, so submitting
again resumes. Each system's header and submit command come from its row in :mod:`.batch_systems`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass

from qcmb_dask.clusters.batch_systems import SYSTEMS
from qcmb_dask.clusters.jobqueue_settings import BatchSettings
from qcmb_dask.errors import InvalidArgument, JobsRefused

#: batch systems a driver job can be submitted to from here
DRIVER_SYSTEMS = tuple(name for name, system in SYSTEMS.items() if system.driver_header is not None)

#: the driver script of a system whose warning before a job's limit is not SIGTERM, the signal the driver ends
#: cleanly on (:mod:`qcmb_dask.interrupts`; :attr:`.BatchSystem.driver_signals`): the driver ignores those
#: signals, and its batch shell passes them on to it as SIGTERM
_FORWARD = """\
trap 'kill -TERM "$driver" 2>/dev/null' {signals}
(trap '' {signals}; exec {command}) &
driver=$!
wait "$driver"; status=$?
while kill -0 "$driver" 2>/dev/null; do wait "$driver"; status=$?; done  # a trap ends a wait early
exit "$status"
"""


@dataclass(frozen=True)
class DriverJob:
    script: str
    log: str
    system: str


def driver_job(
    settings: BatchSettings,
    run_arguments: list[str],
    *,
    walltime: str,
    memory: str,
    log_directory: str,
    name: str = "qcmb-dask-driver",
) -> DriverJob:
    """The script of a driver job that runs ``qcmb-dask run <run_arguments>`` in this directory, with this Python."""
    if settings.system not in DRIVER_SYSTEMS:
        raise InvalidArgument(
            f"qcmb-dask submit writes driver jobs for {', '.join(DRIVER_SYSTEMS)}; for {settings.system}, submit a "
            f"one-core job that runs: qcmb-dask run {shlex.join(run_arguments)}"
        )
    header, log = SYSTEMS[settings.system].driver_header(
        name,
        memory=memory,
        walltime=walltime,
        log_directory=log_directory,
        queue=settings.kwargs.get("queue"),
        account=settings.kwargs.get("account") or settings.kwargs.get("project"),  # LSFCluster names it project
    )
    # the workers' environment set-up, not their deadline: the driver's own walltime is another
    prologue = "\n".join(
        line for line in settings.kwargs.get("job_script_prologue") or [] if line not in settings.deadline_lines
    )
    command = shlex.join([sys.executable, "-m", "qcmb_dask.cli", "run", *run_arguments])
    launch = f"exec {command}\n"
    forwarded = SYSTEMS[settings.system].driver_signals
    if forwarded:
        launch = _FORWARD.format(signals=" ".join(forwarded), command=command)
    script = (
        f"#!/usr/bin/env bash\n{header}\n\n"
        "# qcmb_dask: the driver of one many-body run; it submits and cancels its own worker jobs.\n"
        f"{prologue}\ncd {shlex.quote(os.getcwd())}\n{launch}"
    )
    return DriverJob(script, log, settings.system)


def submit(job: DriverJob, script_path: str) -> str:
    """Write the script and submit it; the batch system's job id. :class:`JobsRefused` with its own words."""
    os.makedirs(os.path.dirname(job.log), exist_ok=True)
    with open(script_path, "w") as f:
        f.write(job.script)
    system = SYSTEMS[job.system]
    # LSF's bsub reads #BSUB lines only from a script on its stdin; given a path, it would run it without them
    command = [*system.submit] if system.submit_reads_stdin else [*system.submit, script_path]
    if not shutil.which(command[0]):
        raise JobsRefused(f"{command[0]} not found here: is this a {job.system.upper()} login node?")
    stdin = job.script if system.submit_reads_stdin else None
    out = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise JobsRefused(
            f"{command[0]} refused the driver job: {(out.stderr or out.stdout).strip()}\n"
            f"The script is {script_path}; change what the message names (--driver-walltime, --driver-memory, "
            "or the partition/account in the profile or with --cluster-option) and submit again."
        )
    return job_id(out.stdout)


def job_id(output: str) -> str:
    """The job id in what the submit command printed: ``1234`` (sbatch --parsable), ``1234.server`` (qsub),
    ``Job <1234> is submitted to queue <normal>.`` (bsub, whose other lines may hold numbers too)."""
    if match := re.search(r"Job <(\d+)> is submitted", output):
        return match.group(1)
    match = re.search(r"\d+(\.\S+)?", output.strip())
    return match.group(0) if match else output.strip()
