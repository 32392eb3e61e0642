"""``cluster="sync"``: every fragment in this process, one at a time, like QCManyBody's own computer.

The reference executor, and the one to debug with (breakpoints, prints and tracebacks work as usual).
"""

from __future__ import annotations

from typing import Any

from qcmb_dask.clusters import resources as res
from qcmb_dask.clusters.base import Backend, ClientSetup, Connection, nothing_to_close
from qcmb_dask.errors import InvalidArgument
from qcmb_dask.options import Options


class InProcessBackend(Backend):
    programs_run_here = True

    @classmethod
    def claim(cls, cluster: Any) -> Backend | None:
        return cls(cluster) if cluster == "sync" else None

    def check(self, options: Options, ncalculations: int) -> None:
        super().check(options, ncalculations)
        if options.timeout_per_task:
            raise InvalidArgument(
                "timeout_per_task needs worker processes to stop (cluster=None, 'local' or a Dask cluster with "
                "nannies); the in-process executor ('sync') cannot stop a calculation."
            )

    def connect(self, options: Options, ncalculations: int, setup: ClientSetup):
        resources = res.in_process(options.threads_per_task, options.memory_per_task)
        where = "qcmb_dask: running in this process (cluster='sync')"
        return nothing_to_close(Connection(resources, where, kind="sync"))
