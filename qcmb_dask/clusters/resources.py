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
) -> Resources:
    """Size an embedded cluster so that workers x threads_per_task = cores, never more.

    By default each fragment gets one core (independent fragments scale better than threads inside
    one); with fewer calculations than cores the spare cores go to the calculations instead.
    """
    cores = machine_cores()
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


def in_process(threads_per_task: int | None, memory_per_task: float | None) -> Resources:
    """The reference executor runs one fragment at a time with all cores, like QCManyBody's computer."""
    threads = threads_per_task or machine_cores()
    return Resources(1, threads, memory_per_task or memory_share(machine_memory_gib(), 1))
