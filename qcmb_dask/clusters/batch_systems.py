"""What qcmb_dask knows of each batch system, one row per system, as dask-jobqueue keeps one module per system.

A system's commands, walltime format, queue reading and driver-job header used to be spread over the settings,
the cluster, the queue reader and the driver job; supporting one more system, or correcting one, meant finding
them all. Here a row says all of it, and those modules ask the row, never the system's name.

Only what qcmb_dask itself does per system is here; dask-jobqueue's classes write the worker jobs' scripts and
submit them. Pure: starts nothing when imported, so the settings and the tests can read it anywhere.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qcmb_dask.clusters.queues import JobState, lsf, pbs, sge, slurm

#: seconds before its walltime that SLURM sends the driver job SIGTERM, so that it cancels its worker jobs itself
WARNING_SECONDS = 300

_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def _walltime(walltime: Any, hours_minutes: bool) -> float | None:
    if walltime in (None, ""):
        return None
    if isinstance(walltime, (int, float)):
        return float(walltime) * 60
    match = _WALLTIME.match(str(walltime).strip())
    if not match:
        raise ValueError(f"walltime={walltime!r} is not understood; use 'HH:MM:SS' or 'D-HH:MM:SS'.")
    days, a, b, c = match.groups()
    if c is not None:
        seconds = int(a) * 3600 + int(b) * 60 + int(c)
    elif b is not None:
        seconds = (int(a) * 3600 + int(b) * 60) if hours_minutes else (int(a) * 60 + int(b))
    else:
        seconds = int(a) * 60
    return float(seconds + (int(days) * 86400 if days else 0))


def walltime_seconds(walltime: Any) -> float | None:
    """Seconds from a batch walltime: ``"HH:MM:SS"``, ``"D-HH:MM:SS"``, ``"MM:SS"`` or minutes.

    Two fields are minutes:seconds, as SLURM reads them; a number is minutes (SLURM's ``--time=90``).
    """
    return _walltime(walltime, hours_minutes=False)


def lsf_walltime_seconds(walltime: Any) -> float | None:
    """As :func:`walltime_seconds`, but two fields are hours:minutes, as LSF's ``-W`` reads them."""
    return _walltime(walltime, hours_minutes=True)


_SLURM_SIGNAL = re.compile(r"--signal[= ](?:[A-Z]+:)?[A-Z0-9]+@(\d+)")
_LSF_WARNING = re.compile(r"-wt\s+['\"]?(\d+)")


def _first_match(pattern: re.Pattern, directives: list, scale: float) -> float | None:
    for directive in map(str, directives):
        if match := pattern.search(directive):
            return float(match.group(1)) * scale
    return None


def slurm_signal_seconds(directives: list) -> float | None:
    """Seconds before the walltime that ``--signal=[B:]SIG@seconds`` asks for its signal; None without one."""
    return _first_match(_SLURM_SIGNAL, directives, 1.0)


def lsf_warning_seconds(directives: list) -> float | None:
    """Seconds before the walltime that LSF's ``-wt minutes`` asks for its warning action; None without one."""
    return _first_match(_LSF_WARNING, directives, 60.0)


def _sbatch_header(name, *, memory, walltime, log_directory, queue, account) -> tuple[str, str]:
    """The driver job's ``#SBATCH`` lines and its log's path (``%j``: the job id)."""
    log = os.path.join(log_directory, f"{name}-%j.log")
    directives = [f"-J {name}", "-n 1", "--cpus-per-task=1", f"--mem={memory}", f"-t {walltime}", f"-o {log}"]
    directives.append(f"--signal=B:TERM@{WARNING_SECONDS}")  # B: to the batch shell, which exec makes Python
    directives += [f"-p {queue}"] if queue else []
    directives += [f"-A {account}"] if account else []
    return "\n".join(f"#SBATCH {d}" for d in directives), log


def _pbs_header(name, *, memory, walltime, log_directory, queue, account) -> tuple[str, str]:
    """The driver job's ``#PBS`` lines and its log's path."""
    log = os.path.join(log_directory, f"{name}.log")
    directives = [f"-N {name}", f"-l select=1:ncpus=1:mem={memory}", f"-l walltime={walltime}", f"-o {log}", "-j oe"]
    directives += [f"-q {queue}"] if queue else []
    directives += [f"-A {account}"] if account else []
    return "\n".join(f"#PBS {d}" for d in directives), log


def _qsub_sge_header(name, *, memory, walltime, log_directory, queue, account) -> tuple[str, str]:
    """The driver job's ``#$`` lines (Grid Engine) and its log's path.

    SGE has no signal a chosen time before the limit; it sends SIGUSR1 at the soft limit ``s_rt``, set here
    WARNING_SECONDS (at most half the walltime) before the hard ``h_rt``, and with ``-notify`` SIGUSR2 a while (the
    queue's ``notify``) before qdel's SIGKILL. The driver's script passes both on as SIGTERM (:mod:`.driver_job`).
    ``-S``: a queue in SGE's default posix_compliant mode runs a script with its own shell (csh), not the #! line.
    ``-V``: the driver submits the worker jobs, so it needs this shell's SGE_ROOT, SGE_CELL and PATH to SGE's qsub
    (sbatch passes the environment on by default; qsub does not).
    """
    log = os.path.join(log_directory, f"{name}.log")
    match = _MEMORY.match(str(memory))
    if not match:
        raise ValueError(f"memory={memory!r} is not understood; use a size such as '4G' or '4000M'.")
    size, unit = float(match.group(1)), (match.group(2) or "M").upper()
    while size != int(size) and unit != "K":  # SGE takes whole numbers: 1.5G -> 1536M
        size, unit = size * 1024, _UNITS[_UNITS.index(unit) - 1]
    directives = [f"-N {name}", "-cwd", "-j y", f"-o {log}", "-S /bin/bash", "-V", "-notify"]
    directives.append(f"-l h_vmem={size:.0f}{unit}")
    seconds = walltime_seconds(walltime)
    if seconds is not None:
        hard = int(seconds)
        soft = hard - min(WARNING_SECONDS, hard // 2)
        hms = lambda t: f"{t // 3600}:{t // 60 % 60:02d}:{t % 60:02d}"  # noqa: E731  (SGE reads no days)
        directives.append(f"-l h_rt={hms(hard)},s_rt={hms(soft)}")
    directives += [f"-q {queue}"] if queue else []
    directives += [f"-P {account}"] if account else []
    return "\n".join(f"#$ {d}" for d in directives), log


_PE = re.compile(r"^(\s*-pe\s+\S+\s+)(\d+)(\s*)$")
_VMEM = re.compile(r"h_vmem=[^,]*")


def _sge_slots(directives: list, resource_spec: str | None, cores: int, memory_bytes: float):
    """SGE counts a job's cores as slots of a parallel environment (``-pe <name> <slots>``) and ``h_vmem`` per
    slot: the directives and resource_spec with the slots set to ``cores`` and h_vmem to memory / cores, so that a
    job asks for what its workers use, whatever cores and memory are."""
    directives = [
        match.group(1) + str(cores) + match.group(3) if (match := _PE.match(str(d))) else d for d in directives
    ]
    if resource_spec and "h_vmem=" in resource_spec:
        per_slot = f"h_vmem={max(1, int(memory_bytes / cores / 2**20))}M"
        resource_spec = _VMEM.sub(per_slot, resource_spec)
    return directives, resource_spec


_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*$", re.IGNORECASE)
_UNITS = "KMGTP"


def _lsf_memory(memory: Any) -> str:
    """``4G`` -> ``4GB``, with its unit: LSF reads a bare number in the site's LSF_UNIT_FOR_LIMITS (KB unless
    changed), and a unit in ``-M`` and ``rusage[mem=]`` since LSF 10.1.0.2. A bare number is MB, as sbatch reads it."""
    match = _MEMORY.match(str(memory))
    if not match:
        raise ValueError(f"memory={memory!r} is not understood; use a size such as '4G' or '4000M'.")
    number, unit = float(match.group(1)), (match.group(2) or "M").upper()
    while number != int(number) and unit != "K":  # LSF takes whole numbers: 1.5G -> 1536MB
        number, unit = number * 1024, _UNITS[_UNITS.index(unit) - 1]
    return f"{math.ceil(number)}{unit}B"


def _bsub_header(name, *, memory, walltime, log_directory, queue, account) -> tuple[str, str]:
    """The driver job's ``#BSUB`` lines and its log's path (``%J``: the job id).

    LSF sends ``-wa`` TERM ``-wt`` minutes before the ``-W`` limit, as SLURM's header asks with ``--signal``; ``-W``
    is ``[HH:]MM``, written from the walltime as :func:`lsf_walltime_seconds` reads it.
    """
    log = os.path.join(log_directory, f"{name}-%J.log")
    mem = _lsf_memory(memory)
    directives = [f"-J {name}", "-n 1", f"-M {mem}", f'-R "rusage[mem={mem}]"']
    seconds = lsf_walltime_seconds(walltime)
    if seconds is not None:
        minutes = math.ceil(seconds / 60)
        directives.append(f"-W {minutes // 60}:{minutes % 60:02d}")
    directives += [f"-o {log}", f"-wt {WARNING_SECONDS // 60}", "-wa TERM"]
    directives += [f"-q {queue}"] if queue else []
    directives += [f"-P {account}"] if account else []
    return "\n".join(f"#BSUB {d}" for d in directives), log


def _slurm_gpus(n: int, directives: list, resource_spec: str | None, cores: int, memory_bytes: float):
    """``--gres=gpu:n``: n GPUs of the node the job runs on (the partition, in the profile's queue, has them)."""
    return [*directives, f"--gres=gpu:{n}"], resource_spec


_SELECT = re.compile(r"^(\s*select=[^,]*)(.*)$")
_NODES = re.compile(r"^(\s*nodes=[^,]*)(.*)$")


def _pbs_gpus(n: int, directives: list, resource_spec: str | None, cores: int, memory_bytes: float):
    """PBS Pro counts GPUs in the job's chunk: ``ngpus=n`` joins the ``-l select=`` resource_spec (dask-jobqueue's
    default one, ``select=1:ncpus=<cores>:mem=<memory>``, where none is set); Torque's ``nodes=1:ppn=8`` gets
    ``:gpus=n``; any other resource_spec keeps its line and a ``-l ngpus=n`` line is added."""
    if resource_spec is None:
        from qcmb_dask import compat

        # the class's own default, written as it writes it
        memory = compat.pbs_memory(memory_bytes)
        resource_spec = f"select=1:ncpus={cores}:mem={memory}"
    if match := _SELECT.match(resource_spec):
        return list(directives), f"{match.group(1)}:ngpus={n}{match.group(2)}"
    if match := _NODES.match(resource_spec):
        return list(directives), f"{match.group(1)}:gpus={n}{match.group(2)}"
    return [*directives, f"-l ngpus={n}"], resource_spec


def _sge_gpus(n: int, directives: list, resource_spec: str | None, cores: int, memory_bytes: float):
    """``-l gpu=n``: the consumable most Grid Engine sites name ``gpu`` (a site with another name sets its own
    ``-l`` line in job_extra_directives and leaves qcmb_dask.batch.gpus-per-job for the workers' share)."""
    return [*directives, f"-l gpu={n}"], resource_spec


def _lsf_gpus(n: int, directives: list, resource_spec: str | None, cores: int, memory_bytes: float):
    """``-gpu "num=n"``: LSF 10.1's GPU request."""
    return [*directives, f'-gpu "num={n}"'], resource_spec


@dataclass(frozen=True)
class BatchSystem:
    """One batch system: its dask-jobqueue class, its commands, and how qcmb_dask reads and writes for it."""

    #: the ``cluster=`` name, and the section of dask-jobqueue's config (``jobqueue.<name>``)
    name: str
    #: dask-jobqueue's cluster class, by name: dask-jobqueue is imported only when a cluster starts
    jobqueue_class: str
    #: submits the job script whose path follows and prints the job's id (the driver job; dask-jobqueue submits
    #: the worker jobs its own way: LSF's bsub reads #BSUB lines from stdin, HTCondor takes a submit description)
    submit: tuple[str, ...]
    #: shows one job (its id follows), told to the user
    status: str
    #: cancels one job (its id follows), told to the user
    cancel: str
    #: shows the queue, run when no worker arrived
    queue: tuple[str, ...]
    #: the submit command reads the script on stdin, not from a path (LSF's bsub reads #BSUB lines only so)
    submit_reads_stdin: bool = False
    #: the walltime setting in seconds, read as this system reads it
    walltime: Callable[[Any], float | None] = walltime_seconds
    #: job ids -> {id: JobState} for the jobs the system still lists, or None where it cannot be asked now
    #: (:mod:`.queues`); None where this system's queue is not read here (the callers then go by time alone)
    read_states: Callable[[list[str]], dict[str, JobState] | None] | None = None
    #: ``(name, *, memory, walltime, log_directory, queue, account)`` -> (directives, log path) of a driver job;
    #: None where ``qcmb-dask submit`` does not write one
    driver_header: Callable[..., tuple[str, str]] | None = None
    #: the job's extra directives -> seconds before its walltime they ask for a warning signal, or None; None where
    #: this system's warning directive is not read here
    signal_seconds: Callable[[list], float | None] | None = None
    #: signals the system sends a driver job before its limit instead of SIGTERM (SGE: SIGUSR1 at s_rt, SIGUSR2
    #: with -notify): the driver script ignores them and passes them on to the driver as SIGTERM
    driver_signals: tuple[str, ...] = ()
    #: ``(job_extra_directives, resource_spec, cores, memory bytes)`` -> the two sized to the job's cores and
    #: memory, where the system asks for them in its own terms (SGE's slots); None where nothing is to size
    size_request: Callable[..., tuple[list, str | None]] | None = None
    #: ``(gpus, job_extra_directives, resource_spec, cores, memory bytes)`` -> the two asking also for ``gpus`` GPUs
    #: per job (``qcmb_dask.batch.gpus-per-job``); None where qcmb_dask does not know how this system asks for GPUs
    gpu_request: Callable[..., tuple[list, str | None]] | None = None


#: cluster= name -> its system, in the order messages list them
SYSTEMS: dict[str, BatchSystem] = {
    system.name: system
    for system in (
        BatchSystem(
            "slurm",
            "SLURMCluster",
            submit=("sbatch", "--parsable"),  # the id alone
            status="squeue -j",
            cancel="scancel",
            queue=("squeue", "-o", "%.12i %.24j %.10T %.10M %.6C %R"),
            read_states=slurm.read,
            signal_seconds=slurm_signal_seconds,
            driver_header=_sbatch_header,
            gpu_request=_slurm_gpus,
        ),
        BatchSystem(
            "pbs",
            "PBSCluster",
            submit=("qsub",),
            status="qstat",
            cancel="qdel",
            queue=("qstat",),
            read_states=pbs.read,
            driver_header=_pbs_header,
            gpu_request=_pbs_gpus,
        ),
        BatchSystem(
            "sge",
            "SGECluster",
            submit=("qsub", "-terse"),  # the id alone
            status="qstat -j",
            cancel="qdel",
            queue=("qstat",),
            read_states=sge.read,
            driver_signals=("USR1", "USR2"),
            size_request=_sge_slots,
            driver_header=_qsub_sge_header,
            gpu_request=_sge_gpus,
        ),
        BatchSystem(
            "lsf",
            "LSFCluster",
            submit=("bsub",),
            submit_reads_stdin=True,
            status="bjobs",
            cancel="bkill",
            queue=("bjobs",),
            walltime=lsf_walltime_seconds,
            read_states=lsf.read,
            signal_seconds=lsf_warning_seconds,
            driver_header=_bsub_header,
            gpu_request=_lsf_gpus,
        ),
        BatchSystem(
            "htcondor",
            "HTCondorCluster",
            submit=("condor_submit",),
            status="condor_q",
            cancel="condor_rm",
            queue=("condor_q",),
        ),
        BatchSystem(
            "oar",
            "OARCluster",
            submit=("oarsub", "-S"),  # -S: read the script's #OAR lines
            status="oarstat -j",
            cancel="oardel",
            queue=("oarstat",),
        ),
        BatchSystem(
            "moab",
            "MoabCluster",
            submit=("msub",),
            status="checkjob",
            cancel="canceljob",
            queue=("showq",),
        ),
    )
}
