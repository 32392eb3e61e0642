"""``cluster=None``: the embedded cluster of this process (started once, reused), or this process itself when
the plan is too small to be worth starting workers for.

The choice compares predicted wall times: in this process the plan's estimate ``E`` (one-core seconds); on
``n`` workers, starting them ``S`` (measured on this machine, :func:`~.shared.startup_seconds`; nothing when
they already run) plus ``E / n``. So a plan runs here when ``E <= S + E / n``. A run that needs worker
processes (``timeout_per_task``) always gets the cluster. Either way one line says where it ran.

A run with GPUs (``gpus=``, or a model chemistry that asks for them: :attr:`AutoBackend.wants_gpus`) gets an
embedded cluster of its own with GPU workers (:func:`.local.gpu_cluster`), closed after: the shared cluster is
never reused across a change of GPUs, and serves the runs without them.
"""

from __future__ import annotations

import contextlib
from typing import Any

from qcmb_dask.clusters import resources as res
from qcmb_dask.clusters.base import Backend, ClientSetup, Connection
from qcmb_dask.clusters.local import gpu_connection
from qcmb_dask.clusters.shared import SHARED, startup_seconds
from qcmb_dask.options import Options


class AutoBackend(Backend):
    programs_run_here = True
    keeps_workers = True

    @classmethod
    def claim(cls, cluster: Any) -> Backend | None:
        return cls(cluster) if cluster is None else None

    def check(self, options: Options, ncalculations: int) -> None:
        super().check(options, ncalculations)
        self._resources(options)  # too many threads for this machine: refused now

    def in_process(self, options: Options) -> tuple[bool, str]:
        """Whether this plan runs here rather than on workers, and the line that says so."""
        resources = self._resources(options)
        if self._layout(options).gpu_workers:
            return False, ""
        if SHARED.client() is not None or self.estimate is None or options.timeout_per_task:
            return False, ""
        start = startup_seconds(self.store_root)
        on_workers = start + self.estimate / resources.n_workers
        if resources.n_workers > 1 and self.estimate > on_workers:
            return False, ""
        return True, (
            f"qcmb_dask: running in this process: the plan is about {self.estimate:.1f} s of work, and starting "
            f"{resources.n_workers} worker(s) here takes about {start:.1f} s, more than they would save "
            "(cluster='local' starts them anyway)"
        )

    def _layout(self, options: Options) -> res.GpuLayout:
        return res.gpu_layout(options.gpus, options.processes_per_gpu, self.wants_gpus)

    def _resources(self, options: Options) -> res.Resources:
        # Sized for the machine, not for one plan: the cluster is kept for the runs after this one.
        gpu_workers = self._layout(options).gpu_workers
        return res.for_this_machine(
            options.n_workers, options.threads_per_task, options.memory_per_task, gpu_workers=gpu_workers
        )

    @contextlib.contextmanager
    def connect(self, options: Options, ncalculations: int, setup: ClientSetup):
        here, line = self.in_process(options)
        if here:
            resources = res.in_process(options.threads_per_task, options.memory_per_task)
            yield Connection(resources, line, kind="in-process")
            return
        resources = self._resources(options)
        layout = self._layout(options)
        if layout.gpu_workers:
            lifetime = "closed after the run; the shared embedded cluster serves runs without GPUs"
            with gpu_connection(resources, layout, setup, "embedded", "with GPUs", lifetime) as connection:
                yield connection
            return
        with SHARED.use(resources, setup, measured_in=self.store_root) as (client, started):
            where = f"started in {started:.1f} s" if started else "reused"
            line = (
                f"qcmb_dask: on the embedded cluster ({resources.n_workers} worker(s), {where}; "
                "kept for the next run, qcmb_dask.close() ends it)"
            )
            yield Connection(resources, line, kind="embedded", client=client)
