"""``cluster=`` -> a backend: one module per kind, behind the small interface of :class:`~.base.Backend`.

    backend = backend_for(cluster)                # which kind, from compute's cluster= argument
    backend.check(options, ncalculations)         # refuses what this kind cannot do, before anything runs
    with backend.connect(options, ncalculations, setup) as connection:   # a client (or this process), sized
        ...  # qcmb_dask.execution runs the graph there

=================  ========================================  =====================
``cluster=``       what runs the fragments                   module
=================  ========================================  =====================
``"sync"``         this process, one at a time               :mod:`.inprocess`
``None``           this process's embedded cluster, reused,  :mod:`.auto`, :mod:`.shared`
                   or this process for a small plan
``"local"``        a LocalCluster of this call's own         :mod:`.local`
``"slurm"``, ...   batch jobs through dask-jobqueue          :mod:`.jobqueue`
``"mpi"``          the ranks of an mpirun (dask-mpi)         :mod:`.mpi`
a Client, ...      a cluster the user has, left running      :mod:`.given`
=================  ========================================  =====================

Adding a kind is one module with a :class:`~.base.Backend` (``claim``, ``check``, ``connect``) and its name in
:func:`_kinds`. Nothing here runs a graph or knows chemistry.
"""

from __future__ import annotations

from typing import Any

from qcmb_dask.clusters.base import Backend, Connection, scheduler_settings
from qcmb_dask.errors import InvalidArgument


def _kinds() -> tuple:
    from qcmb_dask.clusters.auto import AutoBackend
    from qcmb_dask.clusters.given import GivenBackend
    from qcmb_dask.clusters.inprocess import InProcessBackend
    from qcmb_dask.clusters.jobqueue import JobqueueBackend
    from qcmb_dask.clusters.local import LocalBackend
    from qcmb_dask.clusters.mpi import MpiBackend

    return (AutoBackend, InProcessBackend, LocalBackend, MpiBackend, JobqueueBackend, GivenBackend)


def backend_for(cluster: Any) -> Backend:
    """The backend for a ``cluster=`` value; :class:`~qcmb_dask.errors.InvalidArgument` if no kind claims it."""
    for kind in _kinds():
        backend = kind.claim(cluster)
        if backend is not None:
            return backend
    from qcmb_dask.clusters.jobqueue_settings import SYSTEMS

    raise InvalidArgument(
        f"cluster={cluster!r} is not understood. Use None (an embedded LocalCluster), 'sync' (in-process), "
        f"a batch system ({', '.join(SYSTEMS)}) or a profile file (.yaml), 'mpi' (under mpirun), "
        "a distributed.Client, a Dask cluster object, or a scheduler address such as 'tcp://host:8786'."
    )


__all__ = ["Backend", "Connection", "backend_for", "scheduler_settings"]
