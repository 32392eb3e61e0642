"""Scheduler preload: the scheduler sends a worker its next fragment within ``qcmb_dask.scheduler-send-interval``
(1 ms), not Dask's 5 ms.

Dask batches what the scheduler sends each worker: at most one batch per 5 ms, a figure fixed in
``Scheduler.add_worker``. A qcmb_dask worker holds only the fragment it runs (worker-saturation 1.0), so after
each fragment it waits for the next one, and that message is usually held back for the rest of the 5 ms
since the previous one: on 2 cores that was about 0.75 ms per fragment of idle workers (benchmarks/overhead.py).
Batching buys nothing here, since a worker is sent one fragment at a time anyway.

Schedulers that qcmb_dask starts load this module (``scheduler_settings``); for a scheduler of your own,
``dask scheduler --preload qcmb_dask.prompt_sends``.
"""

from __future__ import annotations

import logging

import dask.config
from dask.utils import parse_timedelta
from distributed.diagnostics.plugin import SchedulerPlugin

logger = logging.getLogger(__name__)


class PromptSends(SchedulerPlugin):
    """Shortens the batching interval of the scheduler's stream to every worker, present and joining later."""

    name = "qcmb-dask-prompt-sends"

    def __init__(self, interval: float):
        self.interval = interval

    async def start(self, scheduler) -> None:
        for address in list(scheduler.stream_comms):
            self.add_worker(scheduler, address)

    def add_worker(self, scheduler=None, worker=None) -> None:
        stream = scheduler.stream_comms.get(worker)
        # BatchedSend reads ``interval`` at each send; a Dask without it keeps its own pace, only slower.
        if stream is not None and hasattr(stream, "interval"):
            stream.interval = min(stream.interval, self.interval)


def dask_setup(scheduler) -> None:
    """Called by Dask when the scheduler starts with this module in ``distributed.scheduler.preload``."""
    from . import config  # noqa: F401  qcmb_dask's defaults, in a scheduler started from the command line

    interval = parse_timedelta(dask.config.get("qcmb_dask.scheduler-send-interval"), default="ms")
    scheduler.add_plugin(PromptSends(interval))
    logger.debug("scheduler sends to workers at most every %s s", interval)
