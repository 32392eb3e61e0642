"""A cluster the user has: a ``distributed.Client``, a Dask cluster object or a ``"tcp://host:port"`` address.

Used as it is and left running. Fragments get one core each unless ``threads_per_task`` says otherwise.

Its GPU workers are the workers that declare the Dask resource ``GPU`` (:data:`~qcmb_dask.keys.GPU_RESOURCE`);
fragments placed on a GPU ask for one. Such a cluster is, for instance, dask-cuda's
``LocalCUDACluster(resources={"GPU": 1})`` (one worker per GPU), or workers started as
``QCMB_DASK_GPUS=2 dask worker tcp://... --nworkers 4 --preload qcmb_dask.worker.gpu`` (two processes per card,
each with its card and its share of the card's memory; the other workers see no GPU), or
``dask worker ... --resources GPU=1`` on a machine whose GPU you set up yourself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from qcmb_dask import keys
from qcmb_dask.clusters.base import Backend, ClientSetup, Connection, workers_resources
from qcmb_dask.errors import InvalidArgument
from qcmb_dask.options import Options


class GivenBackend(Backend):
    @classmethod
    def claim(cls, cluster: Any) -> Backend | None:
        if (isinstance(cluster, str) and "://" in cluster) or hasattr(cluster, "scheduler_address"):
            return cls(cluster)
        from distributed import Client

        return cls(cluster) if isinstance(cluster, Client) else None

    def probe(self) -> None:
        """An address is tried before anything is planned: a scheduler that is not there is a message in seconds,
        not Dask's 30 s wait and its traceback."""
        if isinstance(self.cluster, str):
            check_scheduler_answers(self.cluster)

    @contextlib.contextmanager
    def connect(self, options: Options, ncalculations: int, setup: ClientSetup):
        from distributed import Client

        with contextlib.ExitStack() as stack:
            client = self.cluster
            if not isinstance(client, Client):
                client = stack.enter_context(Client(self.cluster))
            if options.timeout_per_task:
                _check_workers_have_nannies(client)
            setup(client)
            resources = workers_resources(client, options.threads_per_task, options.memory_per_task)
            where = f"qcmb_dask: on the cluster you gave (scheduler {client.scheduler.address})"
            shared_process = _fragments_sharing_a_process(client, resources.threads_per_task)
            one_per_process = None
            if shared_process and (options.timeout_per_task or _unsafe(self.programs)):
                resources, one_per_process = _one_fragment_per_process(client, resources)
                why = (
                    "timeout_per_task ends a whole worker process"
                    if options.timeout_per_task
                    else (f"{', '.join(_unsafe(self.programs))} may not run two calculations in one process")
                )
                where += (
                    f"\nqcmb_dask: its workers have up to {shared_process} threads; {why}, so each worker runs one "
                    f"fragment at a time ({resources.n_workers} at once). To use every thread, start workers with "
                    f"--nthreads {resources.threads_per_task} (one fragment each) or pass "
                    f"threads_per_task={shared_process} (each fragment gets all of a worker's threads)."
                )
            with_gpus, declared = gpu_workers(client), _cpu_workers_declared(client)
            if with_gpus:
                where += f"\nqcmb_dask: {with_gpus} of its workers have a GPU (Dask resource {keys.GPU_RESOURCE})"
            yield Connection(
                resources,
                where,
                kind="given",
                client=client,
                task_resources=one_per_process,
                worker_resources=one_per_process,
                gpu_workers=with_gpus,
                cpu_workers_declared=declared,
            )


def gpu_workers(client) -> int:
    """The workers whose resources include a GPU (:data:`~qcmb_dask.keys.GPU_RESOURCE`)."""
    workers = client.scheduler_info().get("workers", {}).values()
    return sum(1 for w in workers if (w.get("resources") or {}).get(keys.GPU_RESOURCE, 0) > 0)


def _cpu_workers_declared(client) -> bool:
    """Whether every worker without a GPU declares :data:`~qcmb_dask.keys.CPU_RESOURCE` (workers started with the
    GPU preload do), and there is one: only then may CPU fragments ask for it without waiting for ever."""
    workers = [w.get("resources") or {} for w in client.scheduler_info().get("workers", {}).values()]
    others = [r for r in workers if not r.get(keys.GPU_RESOURCE)]
    return bool(others) and all(r.get(keys.CPU_RESOURCE) for r in others)


#: seconds a scheduler address has to accept a connection before the run is refused
PROBE_SECONDS = 5.0


def check_scheduler_answers(address: str, timeout: float = PROBE_SECONDS) -> None:
    """Open (and close) a TCP connection to a ``tcp://`` or ``tls://`` scheduler address, or refuse it."""
    import socket

    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme not in ("tcp", "tls"):
            return  # inproc://, ucx:// ...: Dask's own connect says what is wrong
        host, port = parse_host_port(location)
    except (ValueError, TypeError):
        raise InvalidArgument(
            f"cluster={address!r} is not a scheduler address; write it as the scheduler prints it, e.g. "
            "'tcp://10.0.0.5:8786'."
        ) from None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as err:
        why = f"nothing answered within {timeout:g} s" if isinstance(err, TimeoutError) else (err.strerror or str(err))
        raise InvalidArgument(
            f"no Dask scheduler answers at {address} ({why}). Check that the scheduler is "
            "running (`dask scheduler` prints its address), that host and port are the ones it printed, and that no "
            "firewall is between; or leave cluster= out to run on this machine."
        ) from None


def _fragments_sharing_a_process(client, threads_per_task: int) -> int:
    """The most threads of any worker where that is room for two fragments or more (0 where none is)."""
    workers = client.scheduler_info().get("workers", {}).values()
    most = max((w.get("nthreads", 1) for w in workers), default=1)
    return most if most >= 2 * threads_per_task else 0


def _unsafe(programs: Sequence[str]) -> list[str]:
    """The plan's programs whose QCEngine harness does not declare itself thread-safe (or is unknown here)."""
    import qcengine

    unsafe = []
    for name in programs:
        try:
            safe = qcengine.get_program(name, check=False).thread_safe
        except Exception:  # noqa: BLE001 - registered on the workers only: nothing says it is safe
            safe = False
        if not safe:
            unsafe.append(name)
    return unsafe


def _one_fragment_per_process(client, resources):
    """Every worker is to get one :data:`~qcmb_dask.keys.ONE_FRAGMENT_RESOURCE` (workers joining later too) and
    every task of the run to ask for it: one of this run's tasks per worker process at a time. The resources
    each fragment then gets, and that resource."""
    from qcmb_dask import keys
    from qcmb_dask.clusters import resources as res

    nworkers = len(client.scheduler_info().get("workers", {})) or 1
    memory = resources.memory_per_task
    shares = res.Resources(nworkers, resources.threads_per_task, memory, resources.extra)
    return shares, {keys.ONE_FRAGMENT_RESOURCE: 1}


def _check_workers_have_nannies(client) -> None:
    workers = client.scheduler_info().get("workers", {})
    without = [addr for addr, w in workers.items() if not w.get("nanny")]
    if without:
        raise InvalidArgument(
            f"timeout_per_task stops a fragment by ending its worker process, which needs a nanny to restart it; "
            f"{len(without)} worker(s) of this cluster have none (e.g. {without[0]}): start them with a nanny "
            "(the default of dask-worker and of LocalCluster with processes=True), or leave timeout_per_task out."
        )
