"""Dask worker plugin that registers user QCEngine harnesses on every worker."""

from __future__ import annotations

from distributed import WorkerPlugin


class HarnessPlugin(WorkerPlugin):
    """Registers QCEngine ``ProgramHarness`` instances in each worker process (and in workers that join later)."""

    def __init__(self, harnesses: list):
        self.harnesses = harnesses

    def setup(self, worker) -> None:
        from qcmb_dask.programs import register

        register(self.harnesses)
