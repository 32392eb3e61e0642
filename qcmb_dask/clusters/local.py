"""``cluster="local"``: an embedded ``distributed.LocalCluster`` of this call's own, sized to it, closed after.

``cluster=None`` shares one embedded cluster between the calls of a process instead (:mod:`.auto`).

With GPUs (``gpus=``, or every GPU this machine shows when a model chemistry asks for one: :attr:`wants_gpus`),
the cluster has ``gpus x processes_per_gpu`` GPU worker processes, each with one thread, its card and its share
of the card's memory, declaring the Dask resource ``GPU=1`` (the preload :mod:`qcmb_dask.worker.gpu`, told the
worker's index), and CPU workers on the cores left (each GPU process keeps one core to drive its card), which
see no GPU (``CUDA_VISIBLE_DEVICES=""``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import dask

from qcmb_dask import keys
from qcmb_dask.clusters import resources as res
from qcmb_dask.clusters import security
from qcmb_dask.clusters.base import Backend, ClientSetup, Connection, scheduler_settings
from qcmb_dask.options import Options, setting

WORKER_INDEX_VARIABLE = keys.WORKER_INDEX_VARIABLE
#: seconds the workers of a GPU cluster have to start (LocalCluster waits for its own as it starts; these are
#: added after it, one spec each)
WORKERS_START_S = 120.0


class LocalBackend(Backend):
    programs_run_here = True

    @classmethod
    def claim(cls, cluster: Any) -> Backend | None:
        return cls(cluster) if cluster == "local" else None

    def check(self, options: Options, ncalculations: int) -> None:
        super().check(options, ncalculations)
        self._resources(options, ncalculations)  # too many threads, or GPUs, for this machine: refused now

    def _layout(self, options: Options) -> res.GpuLayout:
        return res.gpu_layout(options.gpus, options.processes_per_gpu, self.wants_gpus)

    def _resources(self, options: Options, ncalculations: int) -> res.Resources:
        layout = self._layout(options)
        return res.for_this_machine(
            options.n_workers, options.threads_per_task, options.memory_per_task, ncalculations, layout.gpu_workers
        )

    @contextlib.contextmanager
    def connect(self, options: Options, ncalculations: int, setup: ClientSetup):
        from distributed import Client, LocalCluster

        layout = self._layout(options)
        resources = self._resources(options, ncalculations)
        if layout.gpu_workers:
            with gpu_connection(resources, layout, setup, "local", "of its own", "closed after") as connection:
                yield connection
            return
        # One thread per worker process: PySCF's thread count is process-wide, so concurrency comes from
        # processes and each fragment gets threads_per_task cores of its own.
        with (
            dask.config.set(scheduler_settings()),
            LocalCluster(n_workers=resources.n_workers, **embedded_worker_options()) as local_cluster,
            Client(local_cluster) as client,
        ):
            setup(client)
            where = f"qcmb_dask: on an embedded cluster of its own ({resources.n_workers} worker(s), closed after)"
            yield Connection(resources, where, kind="local", client=client)


def embedded_worker_options() -> dict:
    """What every embedded LocalCluster is started with: one thread per worker process (PySCF's thread count is
    process-wide), TLS, the dashboard address and the log level of the settings."""
    return {
        "threads_per_worker": 1,
        "processes": True,
        **security.local_cluster_options(),
        "dashboard_address": setting("local.dashboard-address"),
        "silence_logs": setting("local.silence-logs"),
    }


@contextlib.contextmanager
def gpu_connection(resources: res.Resources, layout: res.GpuLayout, setup: ClientSetup, kind: str, whose: str,
                   lifetime: str):  # fmt: skip
    """The :class:`Connection` of an embedded cluster with GPUs (:func:`gpu_cluster`), and its where line."""
    with gpu_cluster(resources, layout, setup) as client:
        cpu = resources.n_workers - layout.gpu_workers
        where = f"qcmb_dask: on an embedded cluster {whose} ({layout.describe(cpu)}, {lifetime})"
        where += f"\n{layout.note}" * bool(layout.note)
        yield Connection(
            resources, where, kind=kind, client=client, gpu_workers=layout.gpu_workers, cpu_workers_declared=True
        )


def worker_environments(layout: res.GpuLayout, n_workers: int) -> list[dict[str, str]]:
    """What each of ``n_workers`` worker processes is told (its Nanny's ``env``): the machine's GPUs, the
    processes per GPU and its index; the preload makes the first ``layout.gpu_workers`` GPU workers, the others
    CPU workers that see no GPU."""
    shared = {keys.GPUS_VARIABLE: str(layout.gpus), keys.PROCESSES_PER_GPU_VARIABLE: str(layout.processes_per_gpu)}
    return [{**shared, WORKER_INDEX_VARIABLE: str(index)} for index in range(n_workers)]


def _gpu_local_cluster_class():
    """LocalCluster whose workers each get their own environment and the GPU preload: the spec of each new worker
    (``SpecCluster.new_worker_spec``, what ``scale`` adds) is LocalCluster's, with the Nanny's ``env`` of its
    index. LocalCluster itself gives every worker one spec."""
    from distributed import LocalCluster

    class GpuLocalCluster(LocalCluster):
        def __init__(self, *, environments: list[dict[str, str]], **kwargs):
            self._environments = environments
            super().__init__(n_workers=0, **kwargs)

        def new_worker_spec(self):
            ((name, spec),) = super().new_worker_spec().items()
            index = int(name) if isinstance(name, int) else len(self.worker_spec)
            options = dict(spec["options"])
            if index < len(self._environments):
                env = self._environments[index]
            else:  # a worker beyond the layout (scaled up later): a CPU worker
                env = {**self._environments[0], WORKER_INDEX_VARIABLE: str(index)} if self._environments else {}
            options["env"] = {**(options.get("env") or {}), **env}
            options["preload"] = [*(options.get("preload") or []), keys.GPU_PRELOAD]
            return {name: {**spec, "options": options}}

    return GpuLocalCluster


@contextlib.contextmanager
def gpu_cluster(resources: res.Resources, layout: res.GpuLayout, setup: ClientSetup | None = None):
    """A client of an embedded cluster of ``resources.n_workers`` single-thread workers, the first
    ``layout.gpu_workers`` of them GPU workers; closed on the way out."""
    from distributed import Client

    cluster_class = _gpu_local_cluster_class()
    with (
        dask.config.set(scheduler_settings()),
        cluster_class(
            environments=worker_environments(layout, resources.n_workers), **embedded_worker_options()
        ) as local_cluster,
        Client(local_cluster) as client,
    ):
        local_cluster.scale(resources.n_workers)
        try:
            client.wait_for_workers(resources.n_workers, timeout=WORKERS_START_S)
        except TimeoutError:
            raise RuntimeError(
                f"qcmb_dask: {resources.n_workers} embedded worker(s) ({layout.gpu_workers} with GPUs) did not all "
                f"start within {WORKERS_START_S:.0f} s; the workers' logs (qcmb_dask.local.silence-logs) say why."
            ) from None
        if setup is not None:
            setup(client)
        yield client
