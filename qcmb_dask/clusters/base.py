"""What every cluster kind shares: the :class:`Backend` interface, and the settings of schedulers we start.

A backend knows how to check a run's arguments for its kind of cluster before anything is submitted, and how
to connect: it yields a :class:`Connection` (a client, or none for this process; its resources; a line saying
where the run goes) and closes what it opened. It neither runs graphs nor knows chemistry: that is
:mod:`qcmb_dask.execution`.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import dask

from qcmb_dask import keys
from qcmb_dask.clusters import resources as res
from qcmb_dask.errors import InvalidArgument
from qcmb_dask.options import Options, setting

#: what a run does on a client before its first task (registers its harnesses, imports its programs on the
#: workers); a backend calls it once the client exists, and an embedded cluster counts it in its start-up time
ClientSetup = Callable[[Any], None]


@dataclass
class Connection:
    """Where a run's fragments go, as a backend yields it."""

    resources: res.Resources
    #: the line that says where the run goes
    where: str
    #: what ``cluster=`` chose, for the result's record of how it was made
    kind: str
    #: a ``distributed.Client``; None: this process, one fragment at a time
    client: Any = None
    #: Dask resources every task of the run asks for
    task_resources: dict[str, float] | None = None
    #: Dask resources every worker is given, joining workers too (one fragment per process where workers have
    #: threads to spare for a second)
    worker_resources: dict[str, float] | None = None
    #: how many of the workers (``resources.n_workers``) have a GPU, or a share of one (they declare
    #: ``keys.GPU_RESOURCE``); fragments placed on a GPU go there (:mod:`qcmb_dask.planning.placement`)
    gpu_workers: int = 0
    #: whether every other worker declares ``keys.CPU_RESOURCE`` (those the GPU preload made CPU workers): fragments
    #: placed on a CPU then ask for one and never take a GPU worker's thread
    cpu_workers_declared: bool = False


class Backend(abc.ABC):
    """One kind of ``cluster=``; :func:`qcmb_dask.clusters.backend_for` picks it."""

    #: whether the QC programs run in this process's machine, so compute checks they are installed here
    programs_run_here: bool = False
    #: whether its workers outlive a run (the embedded cluster): worth having them import a run's programs at once
    keeps_workers: bool = False
    #: whether a model chemistry of the run may run on a GPU (PySCF's keyword ``device``: ``gpu`` or ``auto``),
    #: and whether one must (``gpu``); set once the run is planned, before :meth:`connect`
    wants_gpus: bool = False
    needs_gpus: bool = False

    def __init__(self, cluster: Any):
        self.cluster = cluster

    @classmethod
    @abc.abstractmethod
    def claim(cls, cluster: Any) -> Backend | None:
        """This kind's backend if ``cluster`` names it, else None."""

    def check(self, options: Options, ncalculations: int) -> None:
        """Refuse arguments this kind cannot use, before anything is submitted (batch arguments, by default)."""
        given = [name for name in ("jobs", "adapt", "cluster_options") if getattr(options, name)]
        if given:
            raise InvalidArgument(
                f"{', '.join(given)} apply to batch clusters (cluster='slurm', 'pbs', ... or a profile file); "
                f"cluster={self.cluster!r} is not one."
            )

    #: the plan's estimate (one-core seconds), its programs and the result store, once planned (:meth:`consider`)
    estimate: float | None = None
    programs: tuple = ()
    store_root: Any = None

    #: how the backend tells the user what it waits for (a queued job, its reason); compute sets its reporter's
    announce: Callable[[str], None] = staticmethod(logging.getLogger("qcmb_dask").info)

    def probe(self) -> None:  # noqa: B027  (most kinds have nothing to probe)
        """Before planning: what can be found out about the cluster in a moment (an address that answers)."""

    def consider(
        self, estimate: float, programs: Sequence[str], store_root, longest: tuple[float, str] | None = None
    ) -> None:
        """What the plan costs and runs, and the result store, for kinds that choose or prepare by them;
        ``longest``: the costliest calculation's (one-core seconds, label)."""
        self.estimate, self.programs, self.store_root = estimate, tuple(programs), store_root

    @abc.abstractmethod
    def connect(self, options: Options, ncalculations: int, setup: ClientSetup) -> AbstractContextManager[Connection]:
        """A :class:`Connection` for the run, ``setup`` called on its client; closes what it started, leaves
        the user's."""


def scheduler_settings(batch: bool = False) -> dict:
    """Dask settings for a scheduler qcmb_dask starts (it reads them when it starts, in this process).

    - allowed-failures: tries of a fragment whose worker dies under it (a lost worker is rarely its fault;
      on a batch cluster, jobs end at their walltime or are pre-empted: ``qcmb_dask.batch.allowed-failures``);
    - worker-saturation (default 1.0): a worker holds only the fragments it is running, none queued behind
      them. A queued fragment would wait behind a long one instead of starting on the next free worker, and
      would count as a suspect each time that worker dies: behind a fragment that crashes its worker every
      time, the same next-in-priority fragment would fail with it. What the round trip costs is measured in
      ``benchmarks/README.md``.
    - preload :mod:`qcmb_dask.clusters.preload`: the scheduler sends each worker its next fragment within
      ``qcmb_dask.scheduler-send-interval`` rather than Dask's fixed 5 ms batching interval; and
      :mod:`qcmb_dask.diagnostics.runs_on_scheduler`, the live page's plugin from the start.
    """
    failures_key = "batch.allowed-failures" if batch else "allowed-failures"
    import distributed  # noqa: F401  loads distributed's defaults into dask.config (not loaded at our import)

    def with_ours(key: str, *ours: str) -> list:  # the user's modules stay, ours are added once
        modules = list(dask.config.get(key))
        return modules + [module for module in ours if module not in modules]

    settings = {
        "distributed.scheduler.http.routes": with_ours("distributed.scheduler.http.routes", keys.LIVE_PAGE_ROUTES),
        "distributed.scheduler.preload": with_ours(
            "distributed.scheduler.preload", keys.PROMPT_SENDS, keys.RUNS_PRELOAD
        ),
    }
    for key, ours in (
        ("distributed.scheduler.allowed-failures", setting(failures_key)),
        ("distributed.scheduler.worker-saturation", setting("worker-saturation")),
    ):
        # The user's or the site's own value of a Dask setting wins over ours (one equal to ours is kept as ours:
        # a scheduler we started in this process set it so).
        if not users_own(key) or dask.config.get(key, default=None) == ours:
            settings[key] = ours
    return settings


def users_own(key: str) -> bool:
    """Whether the user or the site set a Dask ``key``: in a config file or a ``DASK_`` variable (whatever the
    value), or in this process to something other than the default its package ships."""
    import functools

    from_files = dask.config.collect(paths=dask.config.paths, env=os.environ)
    missing = object()
    if dask.config.get(key, default=missing, config=from_files) is not missing:
        return True
    shipped = functools.reduce(lambda a, b: dask.config.merge(a, b), dask.config.defaults, {})
    return dask.config.get(key, default=missing) != dask.config.get(key, default=missing, config=shipped)


def workers_resources(client, threads_per_task: int | None, memory_per_task: float | None) -> res.Resources:
    """On a cluster qcmb_dask did not size, fragments get 1 core each unless told otherwise."""
    workers = client.scheduler_info().get("workers", {})
    slots = sum(w.get("nthreads", 1) for w in workers.values()) or 1
    threads = threads_per_task or 1
    if memory_per_task is None and workers:
        per_thread = [w["memory_limit"] / w["nthreads"] for w in workers.values() if w.get("memory_limit")]
        if per_thread:
            memory_per_task = res.memory_share(min(per_thread) * threads / 2**30, 1)
    return res.Resources(max(1, slots // threads), threads, memory_per_task)


@contextlib.contextmanager
def nothing_to_close(value):
    yield value
