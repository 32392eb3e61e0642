"""A cluster the user has: a ``distributed.Client``, a Dask cluster object or a ``"tcp://host:port"`` address.

Used as it is and left running. Fragments get one core each unless ``threads_per_task`` says otherwise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from qcmb_dask.clusters.base import Backend, install_harnesses, workers_resources
from qcmb_dask.clusters.session import DistributedSession
from qcmb_dask.errors import InvalidArgument
from qcmb_dask.options import Options


class GivenBackend(Backend):
    @classmethod
    def claim(cls, cluster: Any) -> Backend | None:
        if (isinstance(cluster, str) and "://" in cluster) or hasattr(cluster, "scheduler_address"):
            return cls(cluster)
        from distributed import Client

        return cls(cluster) if isinstance(cluster, Client) else None

    @contextlib.contextmanager
    def session(self, options: Options, harnesses: Sequence, ncalculations: int):
        from distributed import Client

        with contextlib.ExitStack() as stack:
            client = self.cluster
            if not isinstance(client, Client):
                client = stack.enter_context(Client(self.cluster))
            if options.timeout_per_task:
                _check_workers_have_nannies(client)
            install_harnesses(client, harnesses)
            resources = workers_resources(client, options.threads_per_task, options.memory_per_task)
            where = f"qcmb_dask: on the cluster you gave (scheduler {client.scheduler.address})"
            yield DistributedSession(client, resources, where, kind="given")


def _check_workers_have_nannies(client) -> None:
    workers = client.scheduler_info().get("workers", {})
    without = [addr for addr, w in workers.items() if not w.get("nanny")]
    if without:
        raise InvalidArgument(
            f"timeout_per_task stops a fragment by ending its worker process, which needs a nanny to restart it; "
            f"{len(without)} worker(s) of this cluster have none (e.g. {without[0]}): start them with a nanny "
            "(the default of dask-worker and of LocalCluster with processes=True), or leave timeout_per_task out."
        )
