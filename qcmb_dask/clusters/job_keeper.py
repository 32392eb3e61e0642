"""Keeps a dask-jobqueue cluster's jobs: ended ones forgotten and replaced, leaving ones replaced first.

dask-jobqueue keeps an ended job in its cluster's plan, so neither ``scale`` nor ``adapt`` sees it missing
(dask/dask-jobqueue#691). The keeper asks the batch system (:mod:`.queue_state`) about jobs whose workers went
silent, and says what it saw in the system's own words: a job requeued (preempted, or its node failed), ended,
preempted; and it submits a job's replacement as soon as its walltime-aware workers say they leave
(:mod:`qcmb_dask.worker.walltime`), before they have.
"""

from __future__ import annotations

import asyncio
import logging
import time

from qcmb_dask import compat
from qcmb_dask.clusters import queue_state
from qcmb_dask.options import setting

logger = logging.getLogger("qcmb_dask")


class JobKeeper:
    """Keeps ``jobs`` jobs working (or lets ``adapt`` decide) by forgetting jobs that ended, and by submitting a
    job's replacement as soon as its workers say they leave before its walltime (:meth:`on_leaving`).

    Runs on the cluster's event loop, so it never races the cluster's own bookkeeping. A job whose workers had
    connected and none is connected any more is either ended or restarting a worker (its nanny restarts one after
    ``timeout_per_task`` or a crash, in seconds): the batch system is asked which (off the event loop). A job it
    still lists as running is kept, unless it stays without a worker for ``batch.connect-timeout`` seconds; where
    the system's state is not read here, a job is ended after ``RESTART_GRACE_S`` seconds without a worker.
    """

    #: seconds a job may go without a worker, where the batch system cannot be asked, before it counts as ended
    RESTART_GRACE_S = 60.0
    #: seconds between asking the batch system about jobs whose worker never connected
    UNSEEN_CHECK_S = 10.0

    def __init__(self, cluster, jobs: int | None, system: str, interval_s: float = 1.0, announce=logger.warning):
        from tornado.ioloop import PeriodicCallback

        self.cluster = cluster
        self.announce = announce
        #: jobs whose workers leave before the walltime, their replacements submitted already
        self.leaving: set = set()
        #: job names already said to have been requeued (said once per requeue)
        self.requeued: set = set()
        self.jobs = jobs
        self.system = system
        self.seen: set = set()
        #: job name -> when it was first seen without a connected worker (monotonic seconds)
        self.silent_since: dict = {}
        self.replaced = 0
        self._asking = False
        self._unseen_checked = 0.0
        self._limit = float(setting("batch.connect-timeout"))
        self._callback = PeriodicCallback(self._tick, interval_s * 1000)

    def start(self) -> None:
        self.cluster.loop.add_callback(self._callback.start)

    def stop(self) -> None:
        self.cluster.loop.add_callback(self._callback.stop)

    def on_leaving(self, event) -> None:
        """A worker leaves before its job's walltime (:mod:`qcmb_dask.worker.walltime` logs it): submit the job's
        replacement now, so the pool does not shrink while the worker finishes its last fragment."""
        _, message = event
        self.cluster.loop.add_callback(self._replace_leaving, message)

    def _replace_leaving(self, message: dict) -> None:
        jobs_by_name = {str(name): name for name in compat.planned_jobs(self.cluster)}
        worker = self.cluster.scheduler_info.get("workers", {}).get(message.get("address"), {})
        name = self._job_of(worker.get("name", message.get("name")), jobs_by_name)
        if name is None or name in self.leaving:
            return  # another worker of the same job said so first
        self.leaving.add(name)
        self.replaced += 1
        job_id = compat.submitted_job_ids(self.cluster).get(name, "?")
        # With adapt=, Dask's adaptive scaling counts the leaving job until it ends, and replaces it then.
        then = "its replacement is submitted now" if self.jobs is not None else "adapt replaces it when it has left"
        self.announce(
            f"qcmb_dask: job {job_id} ({name}) leaves before its walltime after its current fragment: "
            f"{message.get('why')}; {then}"
        )
        self._scale()

    def _scale(self) -> None:
        """``jobs`` jobs working, plus those leaving (they stay in the cluster's plan, so that it cancels them
        if they outlive the run, until they end)."""
        if self.jobs is not None:
            self.cluster.scale(jobs=self.jobs + len(self.leaving))

    def _job_of(self, worker_name, jobs_by_name: dict) -> str | None:
        if worker_name in jobs_by_name.values():
            return worker_name
        # a job of several workers names them <job>-0, <job>-1, ...
        return jobs_by_name.get(str(worker_name).rsplit("-", 1)[0])

    def _tick(self) -> None:
        cluster = self.cluster
        if cluster.status.name in ("closing", "closed"):
            return
        jobs_by_name = {str(name): name for name in compat.planned_jobs(cluster)}  # once per tick, not per worker
        live = {self._job_of(w.get("name"), jobs_by_name) for w in cluster.scheduler_info.get("workers", {}).values()}
        live.discard(None)
        self.seen |= live
        silent = [name for name in self.seen - live if name in jobs_by_name.values()]
        # Jobs whose worker never connected: waiting in the queue is normal, but one that ended before its worker
        # came (killed at its walltime on a slow node, failed at start) must be replaced too.
        unseen = [name for name in jobs_by_name.values() if name not in self.seen and name not in live]
        now = time.monotonic()
        self.silent_since = {name: self.silent_since.get(name, now) for name in silent}  # a worker back: forgiven
        check_unseen = bool(unseen) and now - self._unseen_checked >= self.UNSEEN_CHECK_S
        if (silent or check_unseen) and not self._asking:
            self._asking = True
            self._unseen_checked = now if check_unseen else self._unseen_checked
            asyncio.ensure_future(self._decide(unseen if check_unseen else []))

    async def _decide(self, unseen: list) -> None:
        try:
            names = list(self.silent_since)
            ids = compat.submitted_job_ids(self.cluster)
            asked = [ids[name] for name in [*names, *unseen] if name in ids]
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(None, queue_state.states, self.system, asked)
            now = time.monotonic()
            ended = {}
            for name in names:
                if name not in self.silent_since:
                    continue  # its worker came back while the batch system was asked
                waited = now - self.silent_since[name]
                if found is not None and name in ids:
                    state = found.get(ids[name])
                    if state is None or not state.alive:
                        ended[name] = _why_ended(state)
                    elif state.pending:  # requeued (preempted, or its node failed): it waits to run again
                        self._requeued(name, ids[name], state)
                    elif waited > self._limit:
                        ended[name] = f"ended ({state.state} without a worker for {waited:.0f} s)"
                elif waited > self.RESTART_GRACE_S:
                    ended[name] = f"ended (without a worker for {waited:.0f} s)"
            if found is not None:  # without the batch system's word, a job that never had a worker is waiting
                live = {self._job_of(w.get("name"), {str(n): n for n in ids}) for w in self._workers()}
                for name in unseen:
                    if name in ids and name not in live and not _alive(found.get(ids[name])):
                        state = found.get(ids[name])
                        ended[name] = f"{_why_ended(state)} before its worker connected"
            self._end(ended, ids)
        finally:
            self._asking = False

    def _requeued(self, name, job_id: str, state) -> None:
        """A job that ran and waits in the queue again: its fragments in flight run elsewhere; it keeps its place
        and is waited for like any queued job (its script runs again, so its workers learn their new deadline)."""
        self.seen.discard(name)
        self.silent_since.pop(name, None)
        if name not in self.requeued:
            self.requeued.add(name)
            reason = f", {state.reason}" if state.reason else ""
            self.announce(
                f"qcmb_dask: job {job_id} ({name}) was requeued by the batch system ({state.state}{reason}: preempted "
                "or its node failed); the fragments it ran go to other workers, finished ones stay in the store, "
                "and it will run again when the queue lets it"
            )

    def _workers(self) -> list:
        return list(self.cluster.scheduler_info.get("workers", {}).values())

    def _end(self, ended: dict, ids: dict) -> None:
        for name, why in ended.items():
            if name in self.leaving:  # it left before its walltime, as it said: its replacement is there already
                self.leaving.discard(name)
            else:
                self.announce(
                    f"qcmb_dask: job {ids.get(name, '?')} ({name}) {why}; the fragments it ran go to other workers, "
                    "finished ones stay in the store, and a replacement is submitted where work remains"
                )
                self.replaced += 1
            self.requeued.discard(name)
            self.seen.discard(name)
            self.silent_since.pop(name, None)
            job = compat.forget_job(self.cluster, name)
            if job is not None:  # cancel the job in case its process outlives its workers
                asyncio.ensure_future(job.close())
        if ended:
            self._scale()


def _alive(state) -> bool:
    return state is not None and state.alive


def _why_ended(state) -> str:
    """What the batch system says of a job that ended under its workers."""
    if state is None:
        return "ended (no longer listed in the queue)"
    said = f"{state.state}, {state.reason}" if state.reason else state.state
    return f"{'was preempted' if state.preempted else 'ended'} ({said})"
