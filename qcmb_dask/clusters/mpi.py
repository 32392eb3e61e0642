"""``cluster="mpi"``: inside an allocation you already hold, the ranks of one ``mpirun`` become the cluster.

For sites that forbid submitting jobs from login nodes, or allocations given as one block: inside the job,
``mpirun -n N python my_mbe.py`` where the script calls ``compute(mbin, cluster="mpi")``. With dask-mpi,
rank 0 runs the scheduler, rank 1 runs the script (and the client), ranks 2 .. N-1 are workers, one
fragment each. Ranks 0 and 2+ never return from ``compute``: they exit when the script on rank 1 ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import dask
import psutil

from qcmb_dask.clusters import security
from qcmb_dask.clusters.base import Backend, ClientSetup, Connection, scheduler_settings, workers_resources
from qcmb_dask.errors import InvalidArgument
from qcmb_dask.options import Options, setting

#: scheduler address once this process (rank 1) has set the MPI cluster up; a second compute reuses it
_scheduler_address: str | None = None


def _import_dask_mpi():
    try:
        import dask_mpi
        from mpi4py import MPI
    except ImportError as e:
        raise ValueError(
            f"cluster='mpi' needs dask-mpi and mpi4py with an MPI library ({e}): pip install 'qcmb_dask[mpi]', "
            "and run the script under mpirun."
        ) from e
    return dask_mpi, MPI


def check_launch(timeout_per_task: float | None = None) -> int:
    """Workers this launch gives; refuses a run that could not work, on every rank alike, before it starts."""
    if timeout_per_task:
        raise InvalidArgument(
            "timeout_per_task ends a worker process, and an MPI rank that ends takes the whole mpirun with it: "
            "leave it out with cluster='mpi'."
        )
    _, MPI = _import_dask_mpi()
    size = MPI.COMM_WORLD.Get_size()
    if _scheduler_address is None and size < 3:
        raise ValueError(
            f"cluster='mpi' runs the scheduler on rank 0, your script on rank 1 and workers on ranks 2 and up: "
            f"launch it with at least 3 ranks (mpirun -n 3 or more); this run has {size}."
        )
    return size - 2


def is_client_rank() -> bool:
    """True on the rank that runs the script's own code after ``compute`` (rank 1), and outside MPI."""
    try:
        from mpi4py import MPI
    except ImportError:
        return True
    return MPI.COMM_WORLD.Get_size() == 1 or MPI.COMM_WORLD.Get_rank() == 1


@contextlib.contextmanager
def mpi_client(scheduler_settings: dict, worker_timeout: float) -> Iterator:
    """Rank 1: a client to the MPI cluster. Other ranks: serve it, then exit with the script."""
    global _scheduler_address
    from distributed import Client

    nworkers = check_launch()
    if _scheduler_address is None:
        dask_mpi, MPI = _import_dask_mpi()
        tls = _tls_on_every_rank(MPI.COMM_WORLD)
        # Each worker rank would otherwise take the whole node's memory as its limit.
        ranks_here = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED).Get_size()
        with dask.config.set(scheduler_settings):  # rank 0 starts the scheduler inside initialize
            dask_mpi.initialize(
                nthreads=1,  # one fragment per worker rank; QCEngine gets threads_per_task cores
                memory_limit=int(psutil.virtual_memory().total / ranks_here),
                dashboard_address=setting("local.dashboard-address"),
                interface=setting("mpi.interface"),
                local_directory=setting("mpi.local-directory"),
                protocol="tls" if tls else None,
                exit=True,
            )
        _scheduler_address = dask.config.get("scheduler-address")
    with Client(_scheduler_address) as client:
        client.wait_for_workers(nworkers, timeout=worker_timeout)
        yield client


def _tls_on_every_rank(comm) -> bool:
    """TLS for the MPI cluster (:mod:`qcmb_dask.clusters.security`): rank 0 makes the credentials and MPI hands
    them to every rank, in memory; each rank keeps them in its Dask config for good, since dask-mpi builds the
    scheduler, the workers, this client and the closing client it registers at exit from that config."""
    chosen = security.mode() if comm.Get_rank() == 0 else None
    chosen = comm.bcast(chosen, root=0)
    if chosen == "none":
        return False
    if chosen == "dask-config":
        security.for_new_cluster()  # refuses settings without certificates, on every rank alike
        dask.config.set({"distributed.comm.require-encryption": True})
        return True
    settings = security.config_for_every_rank(security.for_new_cluster()) if comm.Get_rank() == 0 else None
    dask.config.set(comm.bcast(settings, root=0))
    return True


class MpiBackend(Backend):
    @classmethod
    def claim(cls, cluster: Any) -> Backend | None:
        return cls(cluster) if cluster == "mpi" else None

    def check(self, options: Options, ncalculations: int) -> None:
        super().check(options, ncalculations)
        check_launch(options.timeout_per_task)  # refused on every rank alike, before anything starts

    @contextlib.contextmanager
    def connect(self, options: Options, ncalculations: int, setup: ClientSetup):
        worker_timeout = float(setting("mpi.worker-timeout"))
        with mpi_client(scheduler_settings(), worker_timeout) as client:
            setup(client)
            resources = workers_resources(client, options.threads_per_task, options.memory_per_task)
            where = f"qcmb_dask: on the MPI ranks ({resources.n_workers} worker(s))"
            yield Connection(resources, where, kind="mpi", client=client)
