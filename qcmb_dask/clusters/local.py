"""``cluster="local"``: an embedded ``distributed.LocalCluster`` of this call's own, sized to it, closed after.

``cluster=None`` shares one embedded cluster between the calls of a process instead (:mod:`.auto`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import dask

from qcmb_dask.clusters import resources as res
from qcmb_dask.clusters import security
from qcmb_dask.clusters.base import Backend, ClientSetup, Connection, scheduler_settings
from qcmb_dask.options import Options, setting


class LocalBackend(Backend):
    programs_run_here = True

    @classmethod
    def claim(cls, cluster: Any) -> Backend | None:
        return cls(cluster) if cluster == "local" else None

    def check(self, options: Options, ncalculations: int) -> None:
        super().check(options, ncalculations)
        self._resources(options, ncalculations)  # too many threads for this machine: refused now

    def _resources(self, options: Options, ncalculations: int) -> res.Resources:
        return res.for_this_machine(options.n_workers, options.threads_per_task, options.memory_per_task, ncalculations)

    @contextlib.contextmanager
    def connect(self, options: Options, ncalculations: int, setup: ClientSetup):
        from distributed import Client, LocalCluster

        resources = self._resources(options, ncalculations)
        # One thread per worker process: PySCF's thread count is process-wide, so concurrency comes from
        # processes and each fragment gets threads_per_task cores of its own.
        with (
            dask.config.set(scheduler_settings()),
            LocalCluster(
                n_workers=resources.n_workers,
                threads_per_worker=1,
                processes=True,
                **security.local_cluster_options(),
                dashboard_address=setting("local.dashboard-address"),
                silence_logs=setting("local.silence-logs"),
            ) as local_cluster,
            Client(local_cluster) as client,
        ):
            setup(client)
            where = f"qcmb_dask: on an embedded cluster of its own ({resources.n_workers} worker(s), closed after)"
            yield Connection(resources, where, kind="local", client=client)
