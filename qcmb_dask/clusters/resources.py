"""Cores and memory per fragment: what QCEngine is told, and how many fragments run at once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import psutil

from qcmb_dask.options import MEMORY_FRACTION


@dataclass(frozen=True)
class Resources:
    """``n_workers`` fragments run at once, each with ``threads_per_task`` cores and ``memory_per_task`` GiB."""

    n_workers: int
    threads_per_task: int
    memory_per_task: float | None
    #: more task_config entries where the workers run: ``scratch_directory``, ``scratch_messy`` (a batch profile's)
    extra: dict[str, Any] = field(default_factory=dict)

    def task_config(self, retries: int = 0) -> dict:
        """QCEngine's task_config; without it QCEngine gives every call all cores and most memory.

        ``retries``: QCEngine reruns a calculation that fails with a ``RandomError`` this many times. Scratch
        settings come from ``qcmb_dask.scratch-directory`` / ``scratch-messy``, then from the batch layers.
        """
        from qcmb_dask.options import setting

        config = {
            key: value
            for key, value in (
                ("scratch_directory", setting("scratch-directory")),
                ("scratch_messy", setting("scratch-messy")),
            )
            if value
        }
        config.update({k: v for k, v in self.extra.items() if v is not None})
        config.update({"ncores": self.threads_per_task, "nnodes": 1, "retries": retries})
        if self.memory_per_task:
            config["memory"] = self.memory_per_task
        return config


def machine_cores() -> int:
    """Cores this process may use (the affinity mask, as a batch job sees it), not the node's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def machine_memory_gib() -> float:
    return psutil.virtual_memory().total / 2**30


def memory_share(gib: float, shares: int) -> float:
    """GiB for each of ``shares`` fragments that run at once on ``gib`` of memory."""
    return round(MEMORY_FRACTION * gib / shares, 2)


def for_this_machine(
    n_workers: int | None,
    threads_per_task: int | None,
    memory_per_task: float | None,
    ncalculations: int | None = None,
    gpu_workers: int = 0,
) -> Resources:
    """Size an embedded cluster so that workers x threads_per_task = cores, never more.

    By default each fragment gets one core (independent fragments scale better than threads inside
    one); with fewer calculations than cores the spare cores go to the calculations instead.

    ``gpu_workers``: processes that drive a GPU (one core each, :func:`gpu_layout`); the CPU workers share the
    cores left (none, where none are), ``n_workers`` counts the CPU workers, and the result's ``n_workers`` all.
    """
    cores = machine_cores()
    if gpu_workers:
        if gpu_workers > cores:
            raise ValueError(
                f"{gpu_workers} GPU worker processes need a core each to drive their cards; this machine has {cores}. "
                "Give fewer processes_per_gpu (or gpus)."
            )
        cpu_cores = cores - gpu_workers
        threads = threads_per_task or (max(1, cpu_cores // n_workers) if n_workers else 1)
        cpu_workers = cpu_cores // threads if n_workers is None else n_workers
        if cpu_workers * threads > cpu_cores:
            raise ValueError(
                f"n_workers={cpu_workers} x threads_per_task={threads} = {cpu_workers * threads} threads for CPU "
                f"fragments exceeds the {cpu_cores} core(s) left here beside the {gpu_workers} GPU worker process(es) "
                f"(one core each, of {cores}). Use e.g. n_workers={cpu_cores // threads} (0: GPU workers alone), fewer "
                "threads_per_task, or fewer gpus / processes_per_gpu."
            )
        total = cpu_workers + gpu_workers
        if memory_per_task is None:
            memory_per_task = memory_share(machine_memory_gib(), total)
        return Resources(total, threads, memory_per_task)
    if threads_per_task is None:
        if n_workers:
            threads_per_task = max(1, cores // n_workers)
        else:
            threads_per_task = max(1, cores // ncalculations) if ncalculations else 1
    if n_workers is None:
        n_workers = max(1, cores // threads_per_task)
    if n_workers < 1 or threads_per_task < 1:
        raise ValueError(f"n_workers ({n_workers}) and threads_per_task ({threads_per_task}) must be at least 1.")
    if n_workers * threads_per_task > cores:
        # advice that fits: keep the threads per fragment where they fit on the machine, else all of its cores
        fitting_threads = min(threads_per_task, cores)
        raise ValueError(
            f"n_workers={n_workers} x threads_per_task={threads_per_task} = {n_workers * threads_per_task} threads "
            f"exceeds the {cores} cores available here, which slows every fragment down. "
            f"Use e.g. n_workers={cores // fitting_threads}, threads_per_task={fitting_threads}."
        )
    if memory_per_task is None:
        memory_per_task = memory_share(machine_memory_gib(), n_workers)
    return Resources(n_workers, threads_per_task, memory_per_task)


def visible_gpus() -> int | None:
    """GPUs this process can see: the devices ``CUDA_VISIBLE_DEVICES`` names where it is set (``""``: none), else
    the ``GPU n:`` lines of ``nvidia-smi -L``; None where neither says (no variable, no nvidia-smi)."""
    import shutil
    import subprocess

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = [d.strip() for d in visible.split(",") if d.strip()]
        # CUDA stops at the first entry that names no device ("-1", "NoDevFiles"); ids or UUIDs count
        counted = 0
        for entry in entries:
            if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
                break
            counted += 1
        return counted
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return 0  # nvidia-smi without a driver, or without a device
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


@dataclass(frozen=True)
class GpuLayout:
    """The GPUs of an embedded cluster: ``gpus`` cards, ``processes_per_gpu`` worker processes sharing each."""

    gpus: int = 0
    processes_per_gpu: int = 1
    #: GPUs counted here (None: they could not be counted, and the user's number is trusted)
    counted: int | None = None

    @property
    def gpu_workers(self) -> int:
        return self.gpus * self.processes_per_gpu

    def describe(self, cpu_workers: int) -> str:
        """``"2 GPU(s) x 2 fragment processes + 12 CPU workers"``."""
        return f"{self.gpus} GPU(s) \u00d7 {self.processes_per_gpu} fragment processes + {cpu_workers} CPU workers"

    @property
    def note(self) -> str:
        """A line for the where line where the GPUs could not be counted here, else ``""``."""
        if self.counted is not None or not self.gpus:
            return ""
        return (
            f"qcmb_dask: the GPUs of this machine cannot be counted here (no nvidia-smi, no CUDA_VISIBLE_DEVICES): "
            f"gpus={self.gpus} is trusted"
        )


def gpu_layout(gpus: int | None, processes_per_gpu: int | None, wants_gpus: bool = False) -> GpuLayout:
    """The embedded cluster's GPUs: ``gpus`` as given (refused beyond what this machine shows, where that can be
    counted), or, left None, every GPU this machine shows when the run asks for GPUs (``wants_gpus``), else none."""
    from qcmb_dask.errors import InvalidArgument
    from qcmb_dask.options import setting

    per_gpu = processes_per_gpu if processes_per_gpu is not None else setting("gpu.processes-per-gpu")
    if isinstance(per_gpu, bool) or not isinstance(per_gpu, int) or per_gpu < 1:
        raise InvalidArgument(f"processes_per_gpu={per_gpu!r}: expected a whole number of at least 1.")
    if gpus is None and not wants_gpus:
        return GpuLayout(0, per_gpu)
    counted = visible_gpus()
    if gpus is None:
        return GpuLayout(counted or 0, per_gpu, counted)
    if counted is not None and gpus > counted:
        raise InvalidArgument(
            f"gpus={gpus}: this machine shows {counted} GPU(s) (CUDA_VISIBLE_DEVICES or nvidia-smi -L). Give "
            f"gpus={counted} or fewer, or leave gpus out to use every GPU it shows."
        )
    return GpuLayout(gpus, per_gpu, counted)


def in_process(threads_per_task: int | None, memory_per_task: float | None) -> Resources:
    """The reference executor runs one fragment at a time with all cores, like QCManyBody's computer."""
    threads = threads_per_task or machine_cores()
    return Resources(1, threads, memory_per_task or memory_share(machine_memory_gib(), 1))
