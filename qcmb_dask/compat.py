"""Every touch of a dependency's private API, behind one function each: the only place to mend when one changes.

Each function names what it relies on and why there is no public way; ``tests/test_compat.py`` checks every
one against the installed versions and fails loudly, naming the function, when a dependency changes shape.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any


# -- Python's import system ---------------------------------------------------------------------------------------
def after_import(name: str, callback) -> None:
    """Call ``callback()`` right after module ``name`` is first imported (now, if it already is), without
    importing it: how ``import qcmb_dask`` registers its QCEngine procedures only where QCEngine is used.

    There is no public post-import hook (PEP 369 was withdrawn); a finder first on ``sys.meta_path`` finds the
    module's spec and wraps its loader's ``exec_module``, then removes itself.
    """
    if name in sys.modules:
        callback()
        return

    class _AfterImport:
        @staticmethod
        def find_spec(fullname, path=None, target=None):
            if fullname != name:
                return None
            from importlib.util import find_spec

            sys.meta_path.remove(_AfterImport)
            spec = find_spec(fullname)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                run = spec.loader.exec_module

                def exec_module(module):
                    run(module)
                    callback()

                spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _AfterImport)


# -- dask ----------------------------------------------------------------------------------------------------------
def producer_task(key: str, func, *args):
    """A graph node the scheduler treats as a data producer ("root-ish") whatever its group's size: it waits in
    the scheduler's queue and goes to a worker only when a thread is free, in priority order.

    ``dask.task_spec.Task``'s ``_data_producer`` argument is private (no public way to mark a task so); its
    ``data_producer`` attribute is what the scheduler reads.
    """
    from dask.task_spec import Task

    return Task(key, func, *args, _data_producer=True)


# -- PySCF ---------------------------------------------------------------------------------------------------------
def diis_eigh_with_fallback() -> bool:
    """PySCF's DIIS diagonalizes its small error matrix with ``scipy.linalg.eigh``; scipy's own OpenBLAS, run with
    the Haswell kernels some machines force (``OPENBLAS_CORETYPE``), fails there on some SCF iterations with
    ``LinAlgError("Internal Error")``, while numpy's LAPACK diagonalizes the same matrix. On that error only,
    numpy's is used, so a result is unchanged wherever scipy succeeds. ``pyscf.lib.diis`` reads the function
    through its module global ``scipy``, replaced here by a proxy; idempotent. False where PySCF's shape differs.
    """
    import numpy as np
    import pyscf.lib.diis as diis
    import scipy
    import scipy.linalg

    if isinstance(diis.scipy, _ScipyWithFallback):
        return True
    if getattr(diis, "scipy", None) is not scipy:
        return False

    class _LinalgWithFallback:
        def __getattr__(self, name):
            return getattr(scipy.linalg, name)

        @staticmethod
        def eigh(a, *args, **kwargs):
            try:
                return scipy.linalg.eigh(a, *args, **kwargs)
            except np.linalg.LinAlgError:
                if args or kwargs:
                    raise
                return np.linalg.eigh(a)

    diis.scipy = _ScipyWithFallback(_LinalgWithFallback())
    return True


class _ScipyWithFallback:
    def __init__(self, linalg):
        self.linalg = linalg

    def __getattr__(self, name):
        import scipy

        return getattr(scipy, name)


# -- QCEngine ----------------------------------------------------------------------------------------------------
def registered_harness(name: str) -> Any | None:
    """The harness QCEngine has registered under ``name``, without checking it is installed.

    ``qcengine.get_program`` raises for a registered program that is not found on this machine; the registry
    itself (``qcengine.programs.base.programs``) says what is registered.
    """
    import qcengine

    return qcengine.programs.base.programs.get(name)


def describe_machine_quickly() -> bool:
    """Fill QCEngine's description of this machine without py-cpuinfo, where ``/proc/cpuinfo`` names the CPU.

    QCEngine describes the machine once per process, at its first calculation (``qcengine.config.get_global``),
    and its one use of py-cpuinfo is the CPU's name in each result's provenance; py-cpuinfo finds it by starting
    a Python subprocess, about a second of CPU in every worker and in every process that runs a calculation.
    The name is read from ``/proc/cpuinfo`` instead (what py-cpuinfo reports on Linux), while QCEngine fills
    the rest as usual. False where there is no such file: QCEngine then does it its own way, at its own pace.
    """
    import qcengine.config

    if qcengine.config._global_values is not None:
        return True
    brand = _cpu_name()
    if brand is None:
        return False
    import cpuinfo

    original = cpuinfo.get_cpu_info
    cpuinfo.get_cpu_info = lambda: {"brand_raw": brand}
    try:
        described = _described_apart(qcengine.config)
    finally:
        cpuinfo.get_cpu_info = original
    if qcengine.config._global_values is None:
        qcengine.config._global_values = described
    return True


def _described_apart(config_module) -> dict:
    """What ``qcengine.config.get_global()`` fills, built in a namespace of its own and returned whole.

    ``get_global`` publishes its module-level dict empty and fills it key by key: a calculation started in another
    thread meanwhile (QCManyBody's own, in a user's script, while qcmb_dask describes the machine in the
    background) would find no ``cpu_brand`` in it and fail. Here the same code runs against a copy of its module
    namespace, so the caller assigns a complete description at once."""
    import types

    namespace = {**vars(config_module), "_global_values": None}
    original = config_module.get_global
    types.FunctionType(original.__code__, namespace, "get_global", original.__defaults__)()
    return namespace["_global_values"]


def _cpu_name() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


# -- distributed: the scheduler ----------------------------------------------------------------------------------
def worker_streams(scheduler) -> dict[str, Any]:
    """Worker address -> the scheduler's ``BatchedSend`` to it (``Scheduler.stream_comms``)."""
    return scheduler.stream_comms


def shorten_batching(stream, interval: float) -> bool:
    """Make a ``BatchedSend`` send within ``interval`` seconds (it reads ``interval`` at each send; Dask fixes it
    at 5 ms, dask/distributed has no setting for it). False where this Dask has no such attribute."""
    if stream is None or not hasattr(stream, "interval"):
        return False
    stream.interval = min(stream.interval, interval)
    return True


def tasks_processing(scheduler, key_prefix: str) -> int:
    """Tasks of a key prefix now running on workers, from the scheduler's per-prefix state counts
    (``Scheduler.task_prefixes[prefix].states``): no scan of every task."""
    prefix = scheduler.task_prefixes.get(key_prefix)
    return prefix.states.get("processing", 0) if prefix is not None else 0


def serves_route(scheduler, handler_class) -> bool:
    """Whether the scheduler's web server routes to ``handler_class`` (tornado's ``wildcard_router`` rules of
    ``Scheduler.http_application``): a scheduler without qcmb_dask's page loaded serves none."""
    app = getattr(scheduler, "http_application", None)
    rules = getattr(getattr(app, "wildcard_router", None), "rules", [])
    return any(getattr(rule, "target", None) is handler_class for rule in rules)


async def add_worker_resources(worker, resources: dict) -> None:
    """Give a running worker Dask resources it lacks (``Worker.state.total_resources``, ``Worker.set_resources``,
    the handler the scheduler's ``set_resources`` path uses); its own resources stay."""
    current = dict(worker.state.total_resources)
    missing = {k: v for k, v in resources.items() if k not in current}
    if missing:
        await worker.set_resources(**{**current, **missing})


def resources_before_registration(worker, resources: dict) -> None:
    """Give a worker that has not yet registered with its scheduler Dask resources (an amount of None removes one),
    as ``Worker(resources=...)`` would have: in ``WorkerState.total_resources`` and ``available_resources``, which
    the worker sends in its registration. For a worker preload (``dask_setup`` runs before registration);
    ``Worker.set_resources`` would tell a scheduler that does not know the worker yet."""
    state = worker.state
    for name, amount in resources.items():
        if amount is None:
            state.total_resources.pop(name, None)
            state.available_resources.pop(name, None)
        else:
            state.total_resources[name] = amount
            state.available_resources[name] = amount


def stop_taking_tasks(worker) -> None:
    """The scheduler sends this worker nothing new; what runs on it finishes (Dask's ``closing_gracefully``
    status, which ``Worker.close_gracefully`` sets too, but that one also closes at once, killing what runs).
    Call on the worker's event loop."""
    from distributed.core import Status

    worker.status = Status.closing_gracefully


def tasks_executing(worker) -> int:
    """Tasks running on this worker now (``WorkerState.executing_count``)."""
    return int(worker.state.executing_count)


async def retire_worker(worker, reason: str) -> bool:
    """Ask the scheduler to hand this worker's results to other workers and let it go (``retire_workers``, as
    ``Worker.close_gracefully`` does); whether it did (it cannot while no other worker runs)."""
    from time import time

    retired = await worker.scheduler.retire_workers(
        workers=[worker.address], close_workers=False, remove=True, stimulus_id=f"{reason}-{time()}"
    )
    return bool(retired)


async def close_worker_and_nanny(worker, reason: str) -> None:
    """Close this worker and its nanny: the ``dask worker`` process, and the batch job it is, ends."""
    await worker.close(nanny=True, reason=reason)


async def scheduler_metadata(worker, keys: list, value: Any = None, *, write: bool = False) -> Any:
    """Read (or write) scheduler metadata from a worker: the handlers ``Client.get_metadata`` and
    ``Client.set_metadata`` call."""
    if write:
        return await worker.scheduler.set_metadata(keys=keys, value=value)
    return await worker.scheduler.get_metadata(keys=keys, default=None)


# -- dask-jobqueue -----------------------------------------------------------------------------------------------
def remove_worker_credentials(cluster) -> None:
    """Delete the TLS files dask-jobqueue wrote for the jobs' workers (``JobQueueCluster._get_worker_security``
    keeps each as a ``NamedTemporaryFile`` in ``_job_<key>``, deleted only when the cluster is collected)."""
    for name in [attr for attr in vars(cluster) if attr.startswith("_job_")]:
        handle = getattr(cluster, name)
        if hasattr(handle, "close") and hasattr(handle, "name"):
            with contextlib.suppress(OSError):
                handle.close()


def import_jobqueue():
    """``dask_jobqueue``, with Ctrl-C left as a KeyboardInterrupt, importable from any thread.

    Importing dask-jobqueue (0.9) sets the SIGINT handler to ``sys.exit()`` (for its own ``runner``
    module, which qcmb_dask does not use). In the main thread that made Ctrl-C end a run with exit status
    0, as if it had succeeded; in any other thread (a run started from a worker thread, a GUI) the import
    itself fails ("signal only works in main thread"). So that one call is skipped while it imports, and
    a handler it set earlier (the user imported it first) is put back to Python's own.
    """
    if "dask_jobqueue" not in sys.modules:
        original = signal.signal

        def leave_sigint_alone(signum, handler):
            return signal.getsignal(signum) if signum == signal.SIGINT else original(signum, handler)

        signal.signal = leave_sigint_alone
        try:
            import dask_jobqueue  # noqa: F401
        finally:
            signal.signal = original
    import dask_jobqueue

    handler = signal.getsignal(signal.SIGINT)
    ours_replaced = getattr(handler, "__module__", None) == "dask_jobqueue.runner"
    if ours_replaced and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return dask_jobqueue


def pbs_memory(memory_bytes: int) -> str:
    """Memory as dask-jobqueue writes it in a PBS ``select=`` (its module-level ``pbs_format_bytes_ceil``, not
    exported): a GPU request rebuilds that default resource_spec with ``ngpus`` in it."""
    return import_jobqueue().pbs.pbs_format_bytes_ceil(memory_bytes)


def jobqueue_shipped_defaults(system: str) -> dict[str, Any]:
    """dask-jobqueue's own defaults for ``system``: its ``jobqueue.yaml``, which it loads only into the Dask
    config, where a user's values have already replaced them."""
    import yaml

    dask_jobqueue = import_jobqueue()
    with open(os.path.join(os.path.dirname(dask_jobqueue.__file__), "jobqueue.yaml")) as f:
        return yaml.safe_load(f)["jobqueue"][system]


def planned_jobs(cluster) -> Iterator:
    """The names of the jobs a jobqueue cluster plans to have (``SpecCluster.worker_spec``)."""
    return iter(list(cluster.worker_spec))


def forget_job(cluster, name) -> Any | None:
    """Drop an ended job from a jobqueue cluster's plan (``worker_spec``) and its jobs (``workers``), so that
    ``scale`` submits a replacement: dask-jobqueue keeps ended jobs in its plan (dask/dask-jobqueue#691).
    Returns the job object, to cancel, or None."""
    cluster.worker_spec.pop(name, None)
    return cluster.workers.pop(name, None)


def mark_job_failed(job) -> None:
    """A job whose submission was refused: closing the cluster then does not wait for it to start
    (``distributed.core.Status.failed``)."""
    from distributed.core import Status

    job.status = Status.failed


def submitted_job_ids(cluster) -> dict:
    """job name -> the batch system's job id, for the jobs a jobqueue cluster has submitted (``SpecCluster.workers``
    holds dask-jobqueue's Job objects; ``job_id`` is set once the submission command answered)."""
    ids = {}
    for name, job in list(cluster.workers.items()):
        job_id = getattr(job, "job_id", None)
        if job_id:
            ids[name] = str(job_id)
    return ids


def renamed_keys_translated() -> None:
    """dask-jobqueue reads its old key names (``job-extra``, ``env-extra``, ...) from the Dask config itself and
    warns, from its event loop, each time a job is made, even where the new name is given: qcmb_dask translated
    them already, with its own warning. Its FutureWarning is filtered from then on."""
    warnings.filterwarnings("ignore", message=r"\w+ has been renamed to \w+", category=FutureWarning)
