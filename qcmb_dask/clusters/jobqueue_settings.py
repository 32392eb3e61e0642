"""What a dask-jobqueue cluster is started with: settings in layers, job sizing, walltime -> lifetime.

Pure: reads files and dask config, starts nothing, so ``job_script`` and the tests can use it anywhere. What
differs between batch systems (the class, the walltime's format) is read from :mod:`.batch_systems`.

Layers, later wins, as a site admin expects:
1. dask-jobqueue's own defaults (its ``jobqueue.yaml``);
2. the profile: ``cluster_configs/<system>.yaml`` shipped with qcmb_dask, or a file the user names;
3. the site's and the user's Dask config, ``jobqueue.<system>``, whatever its values (equal to dask-jobqueue's
   defaults or not): each YAML file in Dask's search path (``/etc/dask``, ``$DASK_CONFIG``,
   ``~/.config/dask``, ...) in Dask's order, then ``DASK_JOBQUEUE__...`` variables, then values set in this
   process with ``dask.config.set``;
4. ``qcmb_dask.jobqueue.<system>`` in the Dask config;
5. ``cluster_options`` given to the call.

Keys qcmb_dask must set itself (``processes``; ``cores`` that ``threads_per_task`` does not divide) are
overridden with a :class:`~qcmb_dask.errors.SettingWarning` saying what was used; keys dask-jobqueue renamed
are translated with a warning, as dask-jobqueue does. :attr:`BatchSettings.sources` says which layer set what.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import dask.config
import yaml

from qcmb_dask import compat, keys
from qcmb_dask.clusters.batch_systems import SYSTEMS, walltime_seconds
from qcmb_dask.clusters.resources import memory_share
from qcmb_dask.errors import InvalidArgument, SettingWarning
from qcmb_dask.keys import (
    DEADLINE_VARIABLE,
    GPU_PRELOAD,
    GPUS_VARIABLE,
    MARGIN_VARIABLE,
    PROCESSES_PER_GPU_VARIABLE,
    WALLTIME_PRELOAD,
    WALLTIME_VARIABLE,
)
from qcmb_dask.options import setting

PROFILES_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "cluster_configs")

#: Settings qcmb_dask derives itself: a layer that sets them is overridden, with a warning that says why.
_DERIVED = {
    "processes": "qcmb_dask runs cores / threads_per_task workers per job, one fragment each",
}

#: dask-jobqueue's old names, which it still reads with a warning: translated the same way
_RENAMED = {
    "extra": "worker_extra_args",
    "env_extra": "job_script_prologue",
    "job_extra": "job_extra_directives",
    "header_skip": "job_directives_skip",
}

#: Keys of a profile or cluster_options that go to QCEngine's task_config, not to dask-jobqueue
TASK_CONFIG_KEYS = ("scratch_directory", "scratch_messy")
#: Keys of a profile or cluster_options that are qcmb_dask's own, above its ``qcmb_dask.batch.<key>`` setting: a
#: GPU partition's profile says its GPUs per job beside its queue
QCMB_DASK_KEYS = ("gpus_per_job",)
#: exported by a job of one worker process, whose worker's name has no index (:mod:`qcmb_dask.worker.gpu`)
WORKER_INDEX_VARIABLE = keys.WORKER_INDEX_VARIABLE


@dataclass(frozen=True)
class BatchSettings:
    """Everything needed to start the cluster: the class, its keyword arguments, and the job's shape."""

    system: str
    kwargs: dict[str, Any]
    #: where the profile came from (shipped file or the user's), for messages
    profile: str
    workers_per_job: int
    threads_per_task: int
    memory_per_task: float | None  # GiB
    #: seconds; None where no walltime is set
    walltime_s: float | None = None
    lifetime: tuple[float, float] | None = None  # (lifetime, stagger) in seconds
    notes: list[str] = field(default_factory=list)
    #: setting -> the layer that set it (a file, the environment, cluster_options, ...)
    sources: dict[str, str] = field(default_factory=dict)
    #: QCEngine task_config entries from the layers (scratch_directory, scratch_messy)
    task_config: dict[str, Any] = field(default_factory=dict)
    #: seconds a walltime-aware worker keeps free before its job's end; None: not walltime-aware
    margin_s: float | None = None
    #: the job script lines that tell walltime-aware workers their deadline (in ``job_script_prologue``)
    deadline_lines: tuple[str, ...] = ()
    #: GPUs each job asks for (``qcmb_dask.batch.gpus-per-job``, or ``gpus-per-job`` in the profile or
    #: cluster_options) and the worker processes that share each; 0: jobs without GPUs
    gpus_per_job: int = 0
    processes_per_gpu: int = 1
    #: the job script lines that tell the GPU preload the job's GPUs (in ``job_script_prologue``)
    gpu_lines: tuple[str, ...] = ()

    @property
    def gpu_workers_per_job(self) -> int:
        """The workers of each job that have a GPU, or a share of one."""
        return self.gpus_per_job * self.processes_per_gpu if self.gpus_per_job else 0

    @property
    def cluster_class(self):
        return getattr(compat.import_jobqueue(), SYSTEMS[self.system].jobqueue_class)


def is_batch(cluster: Any) -> bool:
    """``cluster=`` names a batch system ("slurm") or a profile file ("mysite.yaml")."""
    if not isinstance(cluster, (str, os.PathLike)):
        return False
    name = os.fspath(cluster)
    return name.lower() in SYSTEMS or name.endswith((".yaml", ".yml"))


def batch_settings(
    cluster: Any,
    cluster_options: dict[str, Any] | None = None,
    *,
    threads_per_task: int | None = None,
    memory_per_task: float | None = None,
    processes_per_gpu: int | None = None,
) -> BatchSettings:
    """The cluster's settings from every layer, checked, with the job cut into one-fragment workers.

    ``processes_per_gpu``: worker processes sharing each of a GPU job's GPUs (default
    ``qcmb_dask.gpu.processes-per-gpu``)."""
    system, profile_path, profile = _profile(cluster)
    valid = _jobqueue_defaults(system)
    layers = [
        (f"profile {profile_path}", profile),
        *_dask_config_layers(system, valid),
        (f"dask config qcmb_dask.jobqueue.{system}", setting(f"jobqueue.{system}", default={})),
        ("cluster_options", cluster_options or {}),
    ]
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    task_config: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for where, layer in layers:
        for key, value in (layer or {}).items():
            key = _canonical(key)
            if key in TASK_CONFIG_KEYS:
                task_config[key] = value
                sources[key] = where
                continue
            if key in QCMB_DASK_KEYS:
                own[key] = value
                sources[key] = where
                continue
            if key in _RENAMED:
                if value is None or value == []:
                    continue  # dask-jobqueue's own default of the old name
                warnings.warn(
                    f"{where}: {key!r} is dask-jobqueue's old name for {_RENAMED[key]!r}; read as {_RENAMED[key]!r}.",
                    SettingWarning,
                    stacklevel=3,
                )
                key = _RENAMED[key]
            if key not in valid:
                close = difflib.get_close_matches(key, [k for k in valid if k not in _RENAMED], n=2)
                hint = f" (did you mean {' or '.join(close)}?)" if close else ""
                raise ValueError(
                    f"{where}: {key!r} is not a setting of dask-jobqueue's {SYSTEMS[system].jobqueue_class}{hint}. "
                    f"Settings: {', '.join(sorted(valid))}."
                )
            merged[key] = value
            sources[key] = where
    walltime_aware(), longer_than_walltime()  # refused here, before anything is submitted, whatever the walltime
    full = {**valid, **merged}  # what the job will see, dask-jobqueue's defaults included
    settings = _shape_jobs(system, profile_path, merged, full, threads_per_task, memory_per_task, sources)
    settings = dataclasses.replace(settings, task_config=task_config)
    return _with_gpus(settings, full, own, processes_per_gpu)


def _dask_config_layers(system: str, defaults: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``jobqueue.<system>`` from each Dask config file, the environment, and this process, in Dask's order.

    dask-jobqueue's defaults live in the same config tree; what a file or a variable says is the site's or the
    user's, whatever its value. Values set in this process (``dask.config.set``) are told from the defaults by
    differing from them and from every file and variable.
    """
    layers = []
    for path in _config_files():
        try:
            with open(path) as f:
                content = yaml.safe_load(f)
        except (OSError, yaml.YAMLError):
            continue  # Dask itself reports an unreadable config file
        section = _section(content, system)
        if section:
            layers.append((f"dask config {path}", section))
    environment = _section(dask.config.collect_env(), system)
    if environment:
        layers.append(("environment (DASK_JOBQUEUE__...)", environment))
    seen = {**defaults}
    for _, layer in layers:
        seen.update({_canonical(k): v for k, v in layer.items()})
    current = dask.config.get(f"jobqueue.{system}", default={}) or {}
    in_process = {
        _canonical(k): v for k, v in current.items() if _canonical(k) in defaults and seen.get(_canonical(k)) != v
    }
    if in_process:
        layers.append((f"dask.config.set(jobqueue.{system}) in this process", in_process))
    return layers


def _config_files() -> list[str]:
    """Dask's config files, in the order Dask reads them (later wins), as ``dask.config.collect_yaml`` lists them."""
    files = []
    for path in dask.config.paths:
        if os.path.isdir(path):
            try:
                names = sorted(os.listdir(path))
            except OSError:
                continue
            files += [os.path.join(path, n) for n in names if n.endswith((".yaml", ".yml", ".json"))]
        elif os.path.isfile(path):
            files.append(path)
    return files


def _section(content: Any, system: str) -> dict[str, Any]:
    if not isinstance(content, dict):
        return {}
    jobqueue = content.get("jobqueue")
    section = jobqueue.get(system) if isinstance(jobqueue, dict) else None
    return dict(section) if isinstance(section, dict) else {}


def _shape_jobs(system, profile_path, merged, full, threads_per_task, memory_per_task, sources) -> BatchSettings:
    """One fragment per worker, ``threads_per_task`` cores each, all the job's cores used, memory shared."""
    cores = full.get("cores")
    memory = full.get("memory")
    if cores in (None, "") or memory in (None, ""):
        raise ValueError(
            f"cluster={system!r}: the job's 'cores' and 'memory' must be set (in the profile, the dask config "
            "jobqueue section or cluster_options), e.g. cluster_options={'cores': 8, 'memory': '32GiB'}."
        )
    cores = _whole_number("cores", cores, sources.get("cores", "dask-jobqueue"))
    _job_memory_bytes(memory, sources.get("memory", "dask-jobqueue"))
    threads = int(threads_per_task or 1)
    if threads < 1:
        raise ValueError(f"threads_per_task={threads}: give at least 1 core per fragment.")
    if threads > cores:
        warnings.warn(
            f"threads_per_task={threads} is more than the job's {cores} cores ('cores' from "
            f"{sources.get('cores', 'dask-jobqueue')}): each fragment gets {cores} cores.",
            SettingWarning,
            stacklevel=4,
        )
        threads = cores
    elif cores % threads:
        warnings.warn(
            f"threads_per_task={threads} does not divide the job's {cores} cores ('cores' from "
            f"{sources.get('cores', 'dask-jobqueue')}): {cores // threads} worker(s) per job, {cores % threads} "
            "core(s) of each job left idle. Choose threads_per_task dividing cores to use them.",
            SettingWarning,
            stacklevel=4,
        )
    workers = cores // threads
    if merged.get("processes") not in (None, workers):
        warnings.warn(
            f"processes={merged['processes']} from {sources.get('processes')} is not used: "
            f"{_DERIVED['processes']}, so each job runs {workers} worker(s) ({cores} cores / {threads}).",
            SettingWarning,
            stacklevel=4,
        )
    worker_gib = _parse_bytes(memory) / workers / 2**30
    if memory_per_task is None:
        # What QCEngine is told: leave a fifth of the worker's share for Python, Dask and the program's overhead.
        memory_per_task = memory_share(worker_gib, 1)
    elif memory_per_task > worker_gib:
        raise ValueError(
            f"memory_per_task={memory_per_task} GiB does not fit: a job with memory={memory} runs {workers} "
            f"workers, {worker_gib:.2f} GiB each. Raise the job's memory or threads_per_task, or lower memory_per_task."
        )
    kwargs = dict(merged)
    kwargs["cores"] = cores
    kwargs["processes"] = workers
    overridden = (
        f"; processes={merged['processes']} from {sources['processes']} overridden" if "processes" in merged else ""
    )
    sources = {**sources, "processes": f"qcmb_dask: cores / threads_per_task{overridden}"}
    extra = list(full.get("worker_extra_args") or [])
    notes: list[str] = []
    if threads > 1:
        # dask-jobqueue gives each worker cores / processes threads; a worker must run one fragment at a
        # time, with QCEngine told threads_per_task cores. The worker CLI keeps the last --nthreads.
        extra += ["--nthreads", "1"]
        notes.append(f"the last --nthreads (1) wins: one fragment per worker, each given {threads} cores")
    walltime_s = SYSTEMS[system].walltime(full.get("walltime"))
    lifetime, margin_s, deadline_lines = None, None, ()
    prologue = list(full.get("job_script_prologue") or [])
    if walltime_s:
        where = sources.get("walltime", "dask-jobqueue")
        _check_signal_time(system, full, walltime_s, where, sources)
        users_lifetime = _option_seconds(extra, "--lifetime")
        if users_lifetime is not None:
            if users_lifetime >= walltime_s:
                warnings.warn(
                    f"--lifetime {users_lifetime:.0f} s in worker_extra_args (from "
                    f"{sources.get('worker_extra_args')}) is not shorter than the walltime {full.get('walltime')} "
                    f"({walltime_s:.0f} s, from {where}): the batch system ends each job first, killing the "
                    "fragment it runs. Remove --lifetime: qcmb_dask keeps fragments inside the walltime itself.",
                    SettingWarning,
                    stacklevel=4,
                )
            notes.append("worker_extra_args has --lifetime: workers retire at it, not by the walltime")
        elif walltime_aware():
            margin_s = walltime_margin(walltime_s, full.get("walltime"), where)
            deadline_lines = tuple(deadline_exports(walltime_s, margin_s))
            prologue += deadline_lines
            before = sources.get("job_script_prologue")
            sources["job_script_prologue"] = f"{before}, then " * bool(before) + "qcmb_dask: the job's deadline"
            extra += ["--preload", WALLTIME_PRELOAD]
            notes.append(
                f"workers start only fragments that fit before the walltime ({full.get('walltime')}) less "
                f"{margin_s:.0f} s, then leave; their replacements are submitted first"
            )
        else:
            lifetime = lifetime_for(walltime_s)
            extra += ["--lifetime", f"{lifetime[0]:.0f}s", "--lifetime-stagger", f"{lifetime[1]:.0f}s"]
            notes.append(
                f"workers retire after {lifetime[0]:.0f} s +/- {lifetime[1]:.0f} s (walltime {full.get('walltime')}; "
                "qcmb_dask.batch.walltime-aware is false)"
            )
    if prologue:
        kwargs["job_script_prologue"] = prologue
    kwargs["worker_extra_args"] = extra
    # The profile's ``name`` is the job's name (dask-jobqueue's config key); the classes call it job_name.
    size_request = SYSTEMS[system].size_request
    shipped = f"profile {os.path.join(PROFILES_DIR, system + '.yaml')}"
    if size_request is not None:
        # Only the shipped profile's numbers are examples to fit; a site's or a user's request is theirs.
        given = list(full.get("job_extra_directives") or []), full.get("resource_spec")
        sized = size_request(*given, cores, _parse_bytes(memory))
        for key, before, after in zip(("job_extra_directives", "resource_spec"), given, sized, strict=True):
            if after != before and sources.get(key) == shipped:
                kwargs[key] = after
                notes.append(f"{key} sized to the job's {cores} core(s) and {memory}: {after}")
    kwargs["job_name"] = kwargs.pop("name", None) or "qcmb-dask"
    return BatchSettings(
        system,
        kwargs,
        profile_path,
        workers,
        threads,
        memory_per_task,
        walltime_s,
        lifetime,
        notes,
        dict(sources),
        margin_s=margin_s,
        deadline_lines=deadline_lines,
    )


def gpus_per_job(value: Any, where: str = "qcmb_dask.batch.gpus-per-job") -> int:
    """A count of GPUs per job: 0 (none) or more; a string from an environment variable or a flag counts too."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"{where}: gpus-per-job={value!r}: expected a whole number of GPUs per job (0: none).")
    return value


def gpu_exports(gpus: int, processes_per_gpu: int, workers_per_job: int) -> list[str]:
    """Job script lines that tell the GPU preload (:mod:`qcmb_dask.worker.gpu`) the job's GPUs and how many worker
    processes share each; a job of one worker process names its index too (its worker's name has none)."""
    lines = [f"export {GPUS_VARIABLE}={gpus}", f"export {PROCESSES_PER_GPU_VARIABLE}={processes_per_gpu}"]
    if workers_per_job == 1:
        lines.append(f"export {WORKER_INDEX_VARIABLE}=0")
    return lines


def _with_gpus(settings: BatchSettings, full: dict, own: dict, processes_per_gpu: int | None) -> BatchSettings:
    """A GPU job (``gpus-per-job`` > 0): the system's GPU request in its directives, the GPU preload on its
    workers, the job's GPUs exported to them; refused where the job has too few workers for its GPUs' processes
    or the system has no GPU request qcmb_dask knows."""
    where = settings.sources.get("gpus_per_job", "dask config qcmb_dask.batch.gpus-per-job")
    gpus = gpus_per_job(own.get("gpus_per_job", setting("batch.gpus-per-job")), where)
    if not gpus:
        return settings
    per_gpu = processes_per_gpu if processes_per_gpu is not None else setting("gpu.processes-per-gpu")
    if isinstance(per_gpu, bool) or not isinstance(per_gpu, int) or per_gpu < 1:
        raise InvalidArgument(f"processes_per_gpu={per_gpu!r}: expected a whole number of at least 1.")
    system = SYSTEMS[settings.system]
    if system.gpu_request is None:
        asks = [name for name, row in SYSTEMS.items() if row.gpu_request is not None]
        raise InvalidArgument(
            f"gpus-per-job={gpus} (from {where}): qcmb_dask does not know how {settings.system.upper()} jobs ask for "
            f"GPUs (it does for {', '.join(asks)}). Set gpus-per-job to 0 and ask for them in job_extra_directives "
            "yourself, with workers started as a GPU cluster you give (cluster='tcp://...')."
        )
    needed = gpus * per_gpu
    workers = settings.workers_per_job
    if workers < needed:
        cores = settings.kwargs.get("cores")
        raise InvalidArgument(
            f"gpus-per-job={gpus} (from {where}) x processes_per_gpu={per_gpu} needs {needed} worker processes per "
            f"job, but a job of {cores} cores with threads_per_task={settings.threads_per_task} has {workers}. Give "
            f"the job at least {needed * settings.threads_per_task} cores (cores= in the profile or cluster_options), "
            f"or fewer threads_per_task, or processes_per_gpu={max(1, workers // gpus)}."
        )
    kwargs = dict(settings.kwargs)
    sources = dict(settings.sources)
    directives, spec = system.gpu_request(
        gpus,
        list(kwargs.get("job_extra_directives", full.get("job_extra_directives")) or []),
        kwargs.get("resource_spec", full.get("resource_spec")),
        settings.kwargs["cores"],
        _parse_bytes(full.get("memory")),
    )
    for key, value in (("job_extra_directives", directives), ("resource_spec", spec)):
        if value != kwargs.get(key, full.get(key)):
            kwargs[key] = value
            before = sources.get(key)
            sources[key] = f"{before}, then " * bool(before) + f"qcmb_dask: {gpus} GPU(s) per job"
    lines = tuple(gpu_exports(gpus, per_gpu, workers))
    kwargs["job_script_prologue"] = [*(kwargs.get("job_script_prologue") or []), *lines]
    before = sources.get("job_script_prologue")
    sources["job_script_prologue"] = f"{before}, then " * bool(before) + "qcmb_dask: the job's GPUs"
    kwargs["worker_extra_args"] = [*(kwargs.get("worker_extra_args") or []), "--preload", GPU_PRELOAD]
    cpu = workers - needed
    note = (
        f"{gpus} GPU(s) per job, {per_gpu} worker process(es) on each (each with its share of the card's memory), "
        f"{cpu} CPU worker(s) that see no GPU"
    )
    return dataclasses.replace(
        settings,
        kwargs=kwargs,
        sources=sources,
        notes=[*settings.notes, note],
        gpus_per_job=gpus,
        processes_per_gpu=per_gpu,
        gpu_lines=lines,
    )


LONGER_THAN_WALLTIME = ("refuse", "warn")


def walltime_aware() -> bool:
    """``qcmb_dask.batch.walltime-aware``, a yes or no: a string from an environment variable ("false") must not
    count as true."""
    value = setting("batch.walltime-aware")
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no"):
        return value.strip().lower() in ("true", "yes")
    if not isinstance(value, bool):
        raise ValueError(f"qcmb_dask.batch.walltime-aware={value!r}: give true or false.")
    return value


def longer_than_walltime() -> str:
    """``qcmb_dask.batch.longer-than-walltime``: what to do with a fragment no job's walltime holds."""
    value = setting("batch.longer-than-walltime")
    if value not in LONGER_THAN_WALLTIME:
        raise ValueError(
            f"qcmb_dask.batch.longer-than-walltime={value!r}: expected one of {', '.join(LONGER_THAN_WALLTIME)}."
        )
    return value


def walltime_margin(walltime_s: float, walltime: Any = None, where: str = "dask-jobqueue") -> float:
    """Seconds a worker keeps free before its job's end to hand its results over and leave:
    ``qcmb_dask.batch.walltime-margin``, or 2% of the walltime between 5 s and 60 s. A walltime no longer than
    the margin leaves no time to work: refused."""
    margin = setting("batch.walltime-margin")
    if margin is None:
        margin_s = min(60.0, max(5.0, 0.02 * walltime_s))
    else:
        try:
            margin_s = float(margin)
        except (TypeError, ValueError):
            raise ValueError(
                f"qcmb_dask.batch.walltime-margin={margin!r} is not a number of seconds (e.g. 60, or null for 2% of "
                "the walltime)."
            ) from None
        if margin_s < 0:
            raise ValueError(f"qcmb_dask.batch.walltime-margin={margin!r}: give 0 or more seconds.")
    if walltime_s <= margin_s:
        raise ValueError(
            f"walltime {walltime!r} (from {where}) is {walltime_s:.0f} s, no longer than the {margin_s:.0f} s each "
            "worker keeps free before its job ends (qcmb_dask.batch.walltime-margin): no fragment could run. Ask "
            "for a longer walltime or a smaller margin."
        )
    return margin_s


def deadline_exports(walltime_s: float, margin_s: float) -> list[str]:
    """Job script lines that tell the workers when their job ends: the time the job started, plus its walltime
    (a requeued job runs its script again, and so gets its new deadline)."""
    return [
        f"export {DEADLINE_VARIABLE}=$(( $(date +%s) + {walltime_s:.0f} ))",
        f"export {WALLTIME_VARIABLE}={walltime_s:.0f}",
        f"export {MARGIN_VARIABLE}={margin_s:.0f}",
    ]


def _option_seconds(arguments: list, flag: str) -> float | None:
    """The seconds of ``flag`` (``--lifetime 1h``, ``--lifetime=3600s``) among worker arguments, or None."""
    from dask.utils import parse_timedelta

    for position, argument in enumerate(arguments):
        argument = str(argument)
        value = None
        if argument == flag and position + 1 < len(arguments):
            value = arguments[position + 1]
        elif argument.startswith(flag + "="):
            value = argument.split("=", 1)[1]
        if value is not None:
            try:
                return float(parse_timedelta(value, default="s"))
            except (TypeError, ValueError):
                return None
    return None


def _check_signal_time(system: str, full: dict, walltime_s: float, where: str, sources: dict) -> None:
    """A warning signal asked for earlier than the job starts (SLURM's ``--signal=...@seconds``, LSF's
    ``-wt minutes``) would reach every job at once: refused, naming the setting and where it came from."""
    read = SYSTEMS[system].signal_seconds
    seconds = read(full.get("job_extra_directives") or []) if read is not None else None
    if seconds is not None and seconds >= walltime_s:
        raise ValueError(
            f"job_extra_directives (from {sources.get('job_extra_directives', 'dask-jobqueue')}) ask for a signal "
            f"{seconds:.0f} s before the walltime, but the walltime {full.get('walltime')!r} (from {where}) is "
            f"{walltime_s:.0f} s: every job would be signalled as it starts. Ask for the signal less than "
            "the walltime before its end."
        )


def lifetime_for(walltime_s: float) -> tuple[float, float]:
    """``(lifetime, stagger)``: every worker retires, at lifetime +/- stagger, before the batch system kills it.

    The margin (10% of the walltime, between 2 s and 5 minutes) leaves time for a worker to hand its
    results over; the stagger (5%, at most 3 minutes) keeps workers from retiring all at once.
    """
    margin = min(300.0, max(2.0, 0.10 * walltime_s))
    stagger = min(180.0, 0.05 * walltime_s)
    lifetime = walltime_s - margin - stagger
    if lifetime <= 0:
        raise ValueError(f"walltime of {walltime_s:.0f} s leaves no time to work; ask for more.")
    return lifetime, stagger


def parse_walltime(walltime: Any, system: str | None = None) -> float | None:
    """Seconds from a batch walltime, read as ``system`` reads it (:attr:`.BatchSystem.walltime`): ``"HH:MM:SS"``,
    ``"D-HH:MM:SS"``, ``"MM:SS"`` (LSF: ``"HH:MM"``) or minutes."""
    return (SYSTEMS[system].walltime if system in SYSTEMS else walltime_seconds)(walltime)


def _profile(cluster: Any) -> tuple[str, str, dict[str, Any]]:
    """``(system, path, settings)`` of a system name's shipped profile or of a profile file."""
    name = os.fspath(cluster)
    if name.lower() in SYSTEMS:
        system = name.lower()
        path = os.path.join(PROFILES_DIR, f"{system}.yaml")
    else:
        path = os.path.abspath(os.path.expanduser(name))
        if not os.path.isfile(path):
            raise ValueError(f"cluster={name!r}: no such profile file (expected dask-jobqueue's YAML format).")
        system = None
    with open(path) as f:
        content = yaml.safe_load(f) or {}
    sections = content.get("jobqueue") if isinstance(content, dict) else None
    if not isinstance(sections, dict) or not sections:
        raise ValueError(f"profile {path}: expected dask-jobqueue's format, 'jobqueue: {{<system>: {{...}}}}'.")
    if system is None:
        known = [s for s in sections if s in SYSTEMS]
        if len(known) != 1:
            raise ValueError(
                f"profile {path}: name exactly one batch system under 'jobqueue:' ({', '.join(SYSTEMS)}); "
                f"found {sorted(sections)}."
            )
        system = known[0]
    return system, path, sections.get(system) or {}


def _canonical(key: str) -> str:
    return str(key).replace("-", "_")


def _jobqueue_defaults(system: str) -> dict[str, Any]:
    """dask-jobqueue's shipped defaults for ``system``, keys as its cluster classes take them."""
    return {_canonical(k): v for k, v in compat.jobqueue_shipped_defaults(system).items()}


def _whole_number(key: str, value: Any, where: str) -> int:
    """A count from a profile, the Dask config or ``--cluster-option`` (YAML: ``cores=8`` is already a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise ValueError(f"{where}: {key}={value!r} is not a whole number; the job's {key} is a count such as {key}=8.")
    if int(value) < 1:
        raise ValueError(f"{where}: {key}={value!r}: give at least 1, e.g. {key}=8.")
    return int(value)


def _job_memory_bytes(memory: Any, where: str) -> float:
    try:
        size = _parse_bytes(memory)
    except (ValueError, TypeError):
        size = 0.0
    if not size > 0:
        raise ValueError(f"{where}: memory={memory!r} is not a size; write the job's memory as e.g. memory=32GiB.")
    return size


def _parse_bytes(memory: Any) -> float:
    from dask.utils import parse_bytes

    return float(parse_bytes(memory))


def jobs_for(ncalculations: int, workers_per_job: int, max_jobs: int) -> int:
    """Jobs that give every calculation a worker, at most ``max_jobs``."""
    return max(1, min(max_jobs, math.ceil(ncalculations / workers_per_job)))
