"""Walltime-aware batch workers: start only the fragments that fit before the job ends, then leave cleanly.

A batch job ends at its walltime whatever runs in it. Dask's ``--lifetime`` retires a worker at a fixed time
and kills the fragment it runs, which then runs again elsewhere: its core-hours are thrown away. Here a worker
knows its job's deadline (the job script exports :data:`~qcmb_dask.keys.DEADLINE_VARIABLE`, the walltime and
the margin) and decides as each fragment starts:

- the fragment's estimate (``FragmentJob.estimate_s``: the cost model, refined by the store's measured times),
  times the pace measured on this run's workers (:meth:`Walltime.pace`), fits before the deadline less the
  margin: it runs;
- it does not: the worker stops taking fragments (the scheduler sends it nothing more), hands this one back
  unstarted (``Reschedule``: another worker runs it), says so on :data:`~qcmb_dask.keys.LEAVING_TOPIC` (the
  client's job keeper submits the replacement job at once), and, once idle, leaves: Dask's retirement moves
  its results to other workers, and the result store has them anyway.

A worker that has run nothing yet runs a fragment longer than any job could hold rather than pass it on (the
client refuses such a run before submission unless told to go ahead: a job that leaves would only hand it to
another that cannot hold it either). An idle worker within the margin of its deadline leaves too.

Loaded on each batch worker as a Dask preload (``--preload qcmb_dask.worker.walltime``, in the job script),
so it is in place before the first task; elsewhere, with no deadline in the environment, it does nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import time

from distributed import WorkerPlugin

from qcmb_dask import compat
from qcmb_dask.keys import (
    DEADLINE_VARIABLE,
    LEAVING_TOPIC,
    MARGIN_VARIABLE,
    PACE_METADATA,
    WALLTIME_PLUGIN,
    WALLTIME_VARIABLE,
)

logger = logging.getLogger("qcmb_dask")

#: seconds between a worker's looks at its clock (idle near the deadline?) and at the run's shared pace
CHECK_S = 1.0
SHARE_S = 5.0
#: measured / estimated times a worker keeps; its pace (shared) is their upper decile, so that one slow outlier
#: does not send every worker home early, while most fragments still fit with room to spare
KEEP = 50
QUANTILE = 0.9
#: the most a worker's first fragment may say about the pace, before any other measurement
FIRST_CAP = 2.0
#: why the worker closed, in Dask's logs
REASON = "qcmb-dask-walltime"


class Walltime(WorkerPlugin):
    """One batch worker's deadline, what it measured, and its leaving."""

    name = WALLTIME_PLUGIN

    def __init__(self, deadline: float, walltime_s: float, margin_s: float):
        self.deadline, self.walltime_s, self.margin_s = deadline, walltime_s, margin_s
        #: measured / estimated seconds of the fragments this worker computed
        self.ratios: list[float] = []
        #: the same for the first fragment this worker computed (with the program's imports in it)
        self.first: float | None = None
        #: the other workers' paces (scheduler metadata; those of workers gone included), read every SHARE_S seconds
        self.run_paces: list[float] = []
        self.computed = 0
        self.leaving: str | None = None
        self.worker = None
        self._tasks: list[asyncio.Task] = []

    # -- on the worker's event loop ------------------------------------------------------------------------------
    def setup(self, worker) -> None:
        self.worker = worker
        self._tasks = [asyncio.ensure_future(self._watch()), asyncio.ensure_future(self._share())]

    def teardown(self, worker) -> None:
        for task in self._tasks:
            task.cancel()

    async def _watch(self) -> None:
        """Leave when idle within the margin of the deadline; once leaving, leave when idle."""
        while True:
            await asyncio.sleep(CHECK_S)
            idle = compat.tasks_executing(self.worker) == 0
            if self.leaving is None and idle and self.remaining() <= self.margin_s:
                self.begin_leaving(
                    f"{self.remaining():.0f} s of walltime left, within the margin of {self.margin_s:.0f} s"
                )
            if self.leaving is not None and idle:
                # its own task: closing the worker tears this plugin down, which cancels the watchers
                asyncio.ensure_future(self._leave())
                return

    async def _share(self) -> None:
        """Publish this worker's pace and read the others': a replacement job's first fragment is predicted from
        what the run measured, not from the bare cost model. One number per worker each way, so that hundreds of
        workers reading every few seconds cost the scheduler little."""
        key = str(self.worker.name if self.worker.name is not None else self.worker.address)
        published = None
        while True:
            await asyncio.sleep(SHARE_S)
            try:
                if self.ratios and self.own_pace() != published:
                    published = self.own_pace()
                    await compat.scheduler_metadata(self.worker, [PACE_METADATA, key], published, write=True)
                pooled = await compat.scheduler_metadata(self.worker, [PACE_METADATA])
                if isinstance(pooled, dict):
                    self.run_paces = [float(p) for name, p in pooled.items() if name != key and p is not None]
            except Exception as err:  # the scheduler busy or going away: the worker's own ratios still serve
                logger.debug("qcmb_dask: pace not shared: %s", err)

    def begin_leaving(self, why: str) -> None:
        """Take nothing new, and tell the client (its keeper submits the replacement job now)."""
        if self.leaving is not None:
            return
        self.leaving = why
        compat.stop_taking_tasks(self.worker)
        address, name = self.worker.address, self.worker.name
        self.worker.log_event(LEAVING_TOPIC, {"address": address, "name": name, "why": why, "left_s": self.remaining()})
        logger.info("qcmb_dask: worker %s leaves before its job's walltime: %s", name or address, why)

    async def _leave(self) -> None:
        # Wait for a worker to take the results over (the replacement is on its way), while time allows.
        while not await compat.retire_worker(self.worker, REASON):
            if self.remaining() < min(10.0, self.margin_s):
                break  # the results stay in the result store; Dask reads them from there if it needs them
            await asyncio.sleep(CHECK_S)
        await compat.close_worker_and_nanny(self.worker, REASON)

    # -- in the fragment's thread --------------------------------------------------------------------------------
    def remaining(self) -> float:
        return self.deadline - time.time()

    def pace(self) -> float:
        """Measured / estimated time: the upper decile of this worker's measurements and the other workers' paces;
        before any, this worker's first fragment's, at most :data:`FIRST_CAP`; 1 without that either (the
        estimates are the cost model refined by the store's earlier runs)."""
        pool = self.run_paces + self.ratios[-KEEP:]
        if not pool:  # a first fragment's imports can make it look many times slower than it is: capped
            return 1.0 if self.first is None else min(self.first, FIRST_CAP)
        return _upper_decile(pool)

    def own_pace(self) -> float:
        """The upper decile of this worker's own measurements (what it shares)."""
        return _upper_decile(self.ratios[-KEEP:])

    def fits(self, estimate_s: float | None) -> str | None:
        """None where a fragment of this estimate may start now; else why not."""
        if not estimate_s or estimate_s <= 0:
            return None  # nothing to judge by: the margin alone protects it
        needed = estimate_s * self.pace()
        usable = self.remaining() - self.margin_s
        if needed <= usable:
            return None
        if self.computed == 0 and needed > self.walltime_s - self.margin_s:
            return None  # longer than any job holds: no later worker does better than this fresh one
        left = f"{usable:.0f} s are left before" if usable > 0 else "the worker is within"
        return (
            f"the next fragment needs about {needed:.0f} s (estimate {estimate_s:.1f} s x pace {self.pace():.2f}), "
            f"{left} the margin of {self.margin_s:.0f} s"
        )

    def measured(self, estimate_s: float | None, seconds: float) -> None:
        """One computed fragment's time. The first of each worker is kept apart: it carries the program's imports
        (seconds, in a fresh process), which would make later estimates of short fragments far too long; it
        serves only until this worker or the run has measured others."""
        self.computed += 1
        if not (estimate_s and estimate_s > 0 and seconds > 0):
            return
        if self.first is None:
            self.first = seconds / estimate_s
        else:
            self.ratios = (self.ratios + [seconds / estimate_s])[-KEEP:]


def _upper_decile(values: list[float]) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=10, method="inclusive")[int(QUANTILE * 10) - 1]


def of_this_worker() -> Walltime | None:
    """This worker's :class:`Walltime`, or None (not a batch worker with a deadline, or not on a worker)."""
    try:
        from distributed import get_worker

        return get_worker().plugins.get(WALLTIME_PLUGIN)
    except (ImportError, ValueError, AttributeError):
        return None


def before_fragment(estimate_s: float | None, label: str) -> None:
    """Let the fragment start, or leave: hand it back unstarted (``Reschedule``) and take nothing more."""
    keeper = of_this_worker()
    if keeper is None:
        return
    why = "this worker is leaving" if keeper.leaving else keeper.fits(estimate_s)
    if why is None:
        return
    from distributed import Reschedule
    from distributed.utils import sync

    # On the event loop and before the Reschedule, so that the scheduler hears "closing" first and sends the
    # fragment elsewhere (both go over the worker's one ordered stream).
    sync(keeper.worker.loop, _call, keeper.begin_leaving, f"{why} ({label})")
    raise Reschedule()


async def _call(function, *args):
    function(*args)


def after_fragment(estimate_s: float | None, seconds: float) -> None:
    keeper = of_this_worker()
    if keeper is not None:
        keeper.measured(estimate_s, seconds)


def from_environment() -> Walltime | None:
    """The job script's deadline, walltime and margin; None where they are not all set (not a batch worker)."""
    try:
        deadline = float(os.environ[DEADLINE_VARIABLE])
        walltime = float(os.environ[WALLTIME_VARIABLE])
        margin = float(os.environ[MARGIN_VARIABLE])
    except (KeyError, ValueError):
        return None
    return Walltime(deadline, walltime, margin)


async def dask_setup(worker) -> None:
    """The preload's entry point (``dask worker --preload qcmb_dask.worker.walltime``)."""
    keeper = from_environment()
    if keeper is not None:
        await worker.plugin_add(plugin=keeper, name=WALLTIME_PLUGIN)
        logger.info(
            "qcmb_dask: walltime-aware worker: job ends in %.0f s, margin %.0f s", keeper.remaining(), keeper.margin_s
        )
