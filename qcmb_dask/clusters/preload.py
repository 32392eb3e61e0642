"""Scheduler preload: the scheduler sends a worker its next fragment within ``qcmb_dask.scheduler-send-interval``
(1 ms), not Dask's 5 ms.

Dask batches what the scheduler sends each worker: at most one batch per 5 ms, a figure fixed in
``Scheduler.add_worker``. A qcmb_dask worker holds only the fragment it runs (worker-saturation 1.0), so after
each fragment it waits for the next one, and that message is usually held back for the rest of the 5 ms
since the previous one: idle workers (``benchmarks/README.md``, overhead, has what it cost). Batching buys nothing
here, since a worker is sent one fragment at a time anyway.

Schedulers that qcmb_dask starts load this module (``scheduler_settings``), and
:mod:`qcmb_dask.diagnostics.runs_on_scheduler` for the live page; for a scheduler of your own,
``dask scheduler --preload qcmb_dask.clusters.preload`` (every run registers the page's plugin itself).
"""

from __future__ import annotations

import logging

from dask.utils import parse_timedelta
from distributed.diagnostics.plugin import SchedulerPlugin

from qcmb_dask import compat
from qcmb_dask.options import setting

logger = logging.getLogger(__name__)


class PromptSends(SchedulerPlugin):
    """Shortens the batching interval of the scheduler's stream to every worker, present and joining later."""

    name = "qcmb-dask-prompt-sends"

    def __init__(self, interval: float):
        self.interval = interval

    async def start(self, scheduler) -> None:
        for address in list(compat.worker_streams(scheduler)):
            self.add_worker(scheduler, address)

    def add_worker(self, scheduler=None, worker=None) -> None:
        # A Dask without the attribute keeps its own pace, only slower.
        compat.shorten_batching(compat.worker_streams(scheduler).get(worker), self.interval)


def dask_setup(scheduler) -> None:
    """Called by Dask when the scheduler starts with this module in ``distributed.scheduler.preload``."""
    interval = parse_timedelta(setting("scheduler-send-interval"), default="ms")
    scheduler.add_plugin(PromptSends(interval))
    logger.debug("scheduler sends to workers at most every %s s", interval)
