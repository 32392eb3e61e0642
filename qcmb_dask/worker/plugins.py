"""Dask worker plugins: what a worker process is given once, never per task."""

from __future__ import annotations

import os

from distributed import WorkerPlugin


class HarnessPlugin(WorkerPlugin):
    """Registers QCEngine ``ProgramHarness`` instances in each worker process (and in workers that join later)."""

    def __init__(self, harnesses: list):
        self.harnesses = harnesses

    def setup(self, worker) -> None:
        from qcmb_dask.programs import register

        register(self.harnesses)


class ProcessSettings(WorkerPlugin):
    """Process-wide state of each worker, set when the worker starts (or joins later), before any task runs.

    ``environment``: variables a run needs (QCManyBody's ``QCMANYBODY_EMBEDDING_CHARGES``): set once, not
    around each task, since a worker's threads share one environment. ``resources``: Dask worker resources the
    worker gets in addition to its own; ``{"qcmb-dask-process": 1}`` with fragments asking for it runs one
    fragment per worker process on workers with several threads.
    """

    def __init__(self, environment: dict[str, str] | None = None, resources: dict[str, float] | None = None):
        self.environment = dict(environment or {})
        self.resources = dict(resources or {})

    async def setup(self, worker) -> None:
        for name, value in self.environment.items():
            os.environ.setdefault(name, value)
        from qcmb_dask import compat

        await compat.add_worker_resources(worker, self.resources)
