"""A dask-jobqueue cluster for one ``compute`` call: jobs submitted, replaced when they end, all cancelled after.

- Jobs that end (walltime reached, ``scancel``, node lost) are replaced while work remains. dask-jobqueue
  does not do this by itself: a job that ended stays in the cluster's plan, so neither ``scale`` nor
  ``adapt`` sees a missing job (dask/dask-jobqueue#691). :class:`JobKeeper` forgets ended jobs.
- No worker within ``qcmb_dask.batch.worker-timeout`` seconds (queue held, job script broken, workers
  that cannot reach the scheduler): :class:`WorkersNeverArrived` with the job script, the queue's view and
  the job logs, instead of a run that waits forever.
- The cluster is closed and its jobs cancelled when compute returns, raises or is interrupted (Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from typing import Any

import dask

from qcmb_dask import compat
from qcmb_dask.clusters import resources as res
from qcmb_dask.clusters.base import Backend, install_harnesses, scheduler_settings
from qcmb_dask.clusters.jobqueue_settings import BatchSettings, is_batch, jobs_for
from qcmb_dask.clusters.jobqueue_settings import resolve as resolve_settings
from qcmb_dask.clusters.session import DistributedSession
from qcmb_dask.errors import InvalidArgument, JobsRefused, WorkersNeverArrived
from qcmb_dask.options import Options, setting

#: the command that shows each system's queue, for the error when no worker arrives
QUEUE_COMMANDS = {
    "slurm": ["squeue", "-o", "%.12i %.24j %.10T %.10M %.6C %R"],
    "pbs": ["qstat"],
    "sge": ["qstat"],
    "lsf": ["bjobs"],
    "htcondor": ["condor_q"],
    "oar": ["oarstat"],
    "moab": ["showq"],
}


class JobKeeper:
    """Keeps ``jobs`` jobs (or lets ``adapt`` decide) by forgetting jobs whose workers all left.

    Runs on the cluster's event loop, so it never races the cluster's own bookkeeping. A job counts as
    ended once its workers had connected and none is connected any more.
    """

    def __init__(self, cluster, jobs: int | None, interval_s: float = 1.0):
        from tornado.ioloop import PeriodicCallback

        self.cluster = cluster
        self.jobs = jobs
        self.seen: set = set()
        self.replaced = 0
        self._callback = PeriodicCallback(self._tick, interval_s * 1000)

    def start(self) -> None:
        self.cluster.loop.add_callback(self._callback.start)

    def stop(self) -> None:
        self.cluster.loop.add_callback(self._callback.stop)

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
        ended = [name for name in self.seen - live if name in jobs_by_name.values()]
        for name in ended:
            self.seen.discard(name)
            job = compat.forget_job(cluster, name)
            if job is not None:  # cancel the job in case its process outlives its workers
                asyncio.ensure_future(job.close())
            self.replaced += 1
        if ended and self.jobs is not None:
            cluster.scale(jobs=self.jobs)


@contextlib.contextmanager
def batch_client(
    settings: BatchSettings,
    *,
    jobs: int | None,
    adapt: tuple[int, int] | None,
    scheduler_settings: dict,
    worker_timeout: float,
) -> Iterator:
    """Start the cluster, submit the jobs, wait for a first worker; close it all on the way out."""
    from distributed import Client

    refusals: list[str] = []
    job_class = _recording_refusals(settings.cluster_class.job_cls, refusals)
    with dask.config.set(scheduler_settings):  # the scheduler runs here; it reads these when it starts
        cluster = settings.cluster_class(job_cls=job_class, **settings.kwargs)
    keeper = JobKeeper(cluster, None if adapt else jobs)
    try:
        with Client(cluster) as client:
            if adapt:
                cluster.adapt(minimum_jobs=adapt[0], maximum_jobs=adapt[1])
            else:
                cluster.scale(jobs=jobs)
            keeper.start()
            _wait_for_first_worker(client, cluster, settings, worker_timeout, refusals)
            yield client
    finally:
        keeper.stop()
        cluster.close()  # cancels every job it submitted (scancel / qdel)


def _recording_refusals(job_class, refusals: list[str]):
    """The job class, noting every refused submission. dask-jobqueue submits in the background and only
    logs a refused ``sbatch``/``qsub`` (say, more memory than any node has): the run would wait for
    workers that cannot come."""

    class RecordingRefusals(job_class):
        async def start(self):
            try:
                await super().start()
            except RuntimeError as e:  # dask-jobqueue's message: the command, its exit code, its stderr
                refusals.append(str(e))
                compat.mark_job_failed(self)  # closing the cluster checks that no job is left "created"
                raise

    RecordingRefusals.__name__ = job_class.__name__
    return RecordingRefusals


def _wait_for_first_worker(client, cluster, settings: BatchSettings, timeout: float, refusals: list[str]) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.wait_for_workers(1, timeout=min(1.0, max(0.01, deadline - time.monotonic())))
            return
        except TimeoutError:
            pass
        if refusals:
            raise JobsRefused(
                f"The batch system refused the {settings.system.upper()} job, so no worker can start; nothing "
                f"was computed.\n{refusals[0]}\nChange what it names (memory, cores, queue, walltime, account) in "
                "cluster_options or the profile, and check the result with qcmb_dask.job_script() before running "
                f"again.\nJob script:\n{cluster.job_script()}"
            )
        if time.monotonic() >= deadline:
            raise WorkersNeverArrived(diagnose(cluster, settings, timeout))


def diagnose(cluster, settings: BatchSettings, waited: float) -> str:
    """What a user needs when no worker came: the job script, the queue, the logs, what to try."""
    queue_view = _queue_view(settings.system)
    logs = _log_tails(settings.kwargs.get("log_directory"))
    interface = settings.kwargs.get("interface")
    return "\n".join(
        [
            f"No Dask worker connected within {waited:.0f} s of submitting {len(list(compat.planned_jobs(cluster)))} "
            f"{settings.system.upper()} job(s) named {settings.kwargs.get('job_name')!r}; nothing was computed and "
            "the jobs are being cancelled.",
            "Likely causes: the jobs are still queued or held (see the queue below), the job script fails "
            "(see the logs), or the workers cannot reach the scheduler at "
            f"{cluster.scheduler_address} (set 'interface' to the network the compute nodes share with this "
            f"machine, e.g. ib0; now {interface!r}).",
            "Wait longer with dask config qcmb_dask.batch.worker-timeout (seconds).",
            "",
            "Job script:",
            cluster.job_script(),
            f"Queue ({' '.join(QUEUE_COMMANDS.get(settings.system, ['?']))}):",
            queue_view,
            "",
            logs,
        ]
    )


def _queue_view(system: str) -> str:
    command = QUEUE_COMMANDS.get(system)
    if not command or not shutil.which(command[0]):
        return f"  ({command[0] if command else system} not found here)"
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"  ({command[0]} failed: {e})"
    return (out.stdout + out.stderr).rstrip() or "  (empty)"


def _log_tails(log_directory: str | None, files: int = 2, lines: int = 15) -> str:
    if not log_directory:
        return "Job logs: no log_directory is set (set it to keep the jobs' output)."
    log_directory = os.path.abspath(log_directory)
    paths = sorted(glob.glob(os.path.join(log_directory, "*")), key=os.path.getmtime)[-files:]
    if not paths:
        return f"Job logs in {log_directory}: none written yet (the jobs have not started)."
    out = [f"Job logs in {log_directory} (the newest):"]
    for path in paths:
        with open(path, errors="replace") as f:
            tail = f.readlines()[-lines:]
        out.append(f"--- {path}")
        out.extend(line.rstrip() for line in tail)
    return "\n".join(out)


class JobqueueBackend(Backend):
    """``cluster="slurm"``, ``"pbs"``, ... or a profile file: jobs submitted from here, cancelled at the end."""

    @classmethod
    def claim(cls, cluster: Any) -> Backend | None:
        return cls(cluster) if is_batch(cluster) else None

    settings: BatchSettings | None = None
    jobs: int | None = None

    def check(self, options: Options, ncalculations: int) -> None:
        """Resolve the settings and the job count now: a wrong setting is refused before anything is submitted."""
        if options.n_workers is not None:
            raise InvalidArgument(
                "n_workers is for the embedded cluster; on a batch cluster give jobs=N or adapt=(min, max)."
            )
        self.settings = resolve_settings(
            self.cluster,
            options.cluster_options,
            threads_per_task=options.threads_per_task,
            memory_per_task=options.memory_per_task,
        )
        self.jobs = options.jobs
        if options.adapt is None and self.jobs is None:
            max_jobs = int(setting("batch.max-jobs"))
            self.jobs = jobs_for(ncalculations, self.settings.workers_per_job, max_jobs)

    @contextlib.contextmanager
    def session(self, options: Options, harnesses: Sequence, ncalculations: int):
        if self.settings is None:
            self.check(options, ncalculations)
        adapt = tuple(options.adapt) if options.adapt else None
        with batch_client(
            self.settings,
            jobs=self.jobs,
            adapt=adapt,
            scheduler_settings=scheduler_settings(batch=True),
            worker_timeout=float(setting("batch.worker-timeout")),
        ) as client:
            install_harnesses(client, harnesses)
            settings = self.settings
            workers = settings.workers_per_job * (adapt[1] if adapt else self.jobs)
            resources = res.Resources(workers, settings.threads_per_task, settings.memory_per_task)
            amount = f"adapt {adapt[0]}-{adapt[1]} jobs" if adapt else f"{self.jobs} job(s)"
            where = f"qcmb_dask: on {settings.system.upper()} jobs ({amount})"
            yield DistributedSession(client, resources, where, kind=settings.system)


def preview_job_script(settings: BatchSettings) -> str:
    """The job script these settings submit, with a placeholder scheduler address; submits nothing."""
    import sys

    job_class = settings.cluster_class.job_cls
    kwargs = {k: v for k, v in settings.kwargs.items() if k != "scheduler_options"}
    kwargs.setdefault("python", sys.executable)
    log_directory = kwargs.get("log_directory")
    created = bool(log_directory) and not os.path.exists(log_directory)
    try:
        script = job_class(scheduler="tcp://SCHEDULER:8786", name="WORKER-NAME", **kwargs).job_script()
    finally:
        if created:  # the job class makes the log directory; a preview leaves no trace
            with contextlib.suppress(OSError):
                os.rmdir(log_directory)
    return script + "".join(f"# qcmb_dask: {note}\n" for note in settings.notes)
