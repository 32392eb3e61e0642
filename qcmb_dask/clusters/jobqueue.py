"""A dask-jobqueue cluster for one ``compute`` call: jobs submitted, replaced when they end, all cancelled after.

- Jobs that end (walltime reached, ``scancel``, node lost) are replaced while work remains. dask-jobqueue
  does not do this by itself: a job that ended stays in the cluster's plan, so neither ``scale`` nor
  ``adapt`` sees a missing job (dask/dask-jobqueue#691). :class:`~.job_keeper.JobKeeper` forgets ended jobs,
  and submits a job's replacement as soon as its workers say they leave before its walltime.
- Jobs waiting in the queue are waited for, however long, with the queue's reason said every
  ``qcmb_dask.batch.queue-report-interval`` seconds; a job that ran and ended (or ran for
  ``batch.connect-timeout`` seconds) without a worker, a refused submission, or a ``batch.worker-timeout`` the
  user set ends the wait: :class:`WorkersNeverArrived` or :class:`JobsRefused` with the job script, the
  queue's view and the job logs.
- The cluster is closed and its jobs cancelled when compute returns, raises or is interrupted (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from typing import Any

import dask

from qcmb_dask import compat, keys
from qcmb_dask.clusters import queue_state, security
from qcmb_dask.clusters import resources as res
from qcmb_dask.clusters.base import Backend, ClientSetup, Connection, scheduler_settings
from qcmb_dask.clusters.batch_systems import SYSTEMS
from qcmb_dask.clusters.job_keeper import JobKeeper
from qcmb_dask.clusters.jobqueue_settings import (
    BatchSettings,
    batch_settings,
    is_batch,
    jobs_for,
    longer_than_walltime,
)
from qcmb_dask.errors import InvalidArgument, JobsRefused, SettingWarning, WorkersNeverArrived
from qcmb_dask.options import Options, setting
from qcmb_dask.planning.cost import duration

logger = logging.getLogger("qcmb_dask")


@contextlib.contextmanager
def batch_client(
    settings: BatchSettings,
    *,
    jobs: int | None,
    adapt: tuple[int, int] | None,
    scheduler_settings: dict,
    announce,
) -> Iterator:
    """Start the cluster, submit the jobs, wait for a first worker; close it all on the way out."""
    from distributed import Client

    refusals: list[str] = []
    job_class = _recording_refusals(settings.cluster_class.job_cls, refusals)
    compat.renamed_keys_translated()
    with dask.config.set(scheduler_settings):  # the scheduler runs here; it reads these when it starts
        cluster = settings.cluster_class(job_cls=job_class, **settings.kwargs, **_tls(settings.kwargs))
    keeper = JobKeeper(cluster, None if adapt else jobs, settings.system, announce=announce)
    # distributed closes a job whose worker stays away for lost-worker-timeout (15 s), and the cluster submits
    # another: a nanny restarting its worker on a loaded node takes that long. The keeper decides instead.
    patience = {"distributed.deploy.lost-worker-timeout": f"{float(setting('batch.connect-timeout')):.0f}s"}
    try:
        with dask.config.set(patience), Client(cluster) as client:
            if adapt:
                cluster.adapt(minimum_jobs=adapt[0], maximum_jobs=adapt[1])
            else:
                cluster.scale(jobs=jobs)
            keeper.start()
            if settings.margin_s is not None:
                client.subscribe_topic(keys.LEAVING_TOPIC, keeper.on_leaving)
            _wait_for_first_worker(client, cluster, settings, refusals, announce)
            yield client
    finally:
        keeper.stop()
        cluster.close()  # cancels every job it submitted (scancel / qdel)
        compat.remove_worker_credentials(cluster)


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


def _wait_for_first_worker(client, cluster, settings: BatchSettings, refusals: list[str], announce) -> None:
    """Wait while the jobs wait in the queue, saying why every ``batch.queue-report-interval`` seconds.

    Gives up only on a refusal (:class:`JobsRefused`), on a job that ran and ended, or ran for
    ``batch.connect-timeout`` seconds, without a worker connecting (the job script fails, or the workers cannot
    reach this scheduler), or after ``batch.worker-timeout`` seconds if the user set one
    (:class:`WorkersNeverArrived`). Jobs that merely wait keep their place in the queue.
    """
    began = time.monotonic()
    limit = setting("batch.worker-timeout")
    connect_limit = float(setting("batch.connect-timeout"))
    every = float(setting("batch.queue-report-interval"))
    last_report, running_since = began, {}
    while True:
        try:
            client.wait_for_workers(1, timeout=1.0)
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
        now = time.monotonic()
        ids = list(compat.submitted_job_ids(cluster).values())
        found = queue_state.states(settings.system, ids)
        if found is not None:
            for job_id in ids:
                if job_id in found and found[job_id].running:
                    running_since.setdefault(job_id, now)
            # ended: listed as done or failed, or seen running and no longer listed
            ended = [j for j in ids if (j in found and not found[j].alive) or (j in running_since and j not in found)]
            if ended:
                raise WorkersNeverArrived(
                    diagnose(cluster, settings, now - began, f"job {ended[0]} ended without a worker connecting")
                )
            stuck = [j for j, since in running_since.items() if now - since > connect_limit and j in found]
            if stuck:
                raise WorkersNeverArrived(
                    diagnose(
                        cluster,
                        settings,
                        now - began,
                        f"job {stuck[0]} has run for {connect_limit:.0f} s (batch.connect-timeout) without a worker "
                        "connecting",
                    )
                )
        if limit is not None and now - began >= float(limit):
            raise WorkersNeverArrived(
                diagnose(cluster, settings, now - began, f"the limit batch.worker-timeout={limit} s was reached")
            )
        if now - last_report >= every:
            last_report = now
            where = f": {queue_state.summary(found, ids)}" if found is not None else ""
            announce(
                f"qcmb_dask: waiting for {len(ids)} {settings.system.upper()} job(s) to start{where}; "
                f"{duration(now - began)} so far. Queued jobs keep their place; Ctrl-C cancels them."
            )


def diagnose(cluster, settings: BatchSettings, waited: float, why: str) -> str:
    """What a user needs when no worker came: why we stopped waiting, the job script, the queue, the logs."""
    queue_view = _queue_view(settings.system)
    logs = _log_tails(settings.kwargs.get("log_directory"))
    interface = settings.kwargs.get("interface")
    return "\n".join(
        [
            f"No Dask worker connected in {waited:.0f} s after submitting {len(list(compat.planned_jobs(cluster)))} "
            f"{settings.system.upper()} job(s) named {settings.kwargs.get('job_name')!r}: {why}. Nothing was "
            "computed, and the jobs are being cancelled.",
            "Likely causes: the job script fails (see the logs), or the workers cannot reach the scheduler at "
            f"{cluster.scheduler_address} (set 'interface' to the network the compute nodes share with this "
            f"machine, e.g. ib0; now {interface!r}).",
            "",
            "Job script:",
            cluster.job_script(),
            f"Queue ({' '.join(SYSTEMS[settings.system].queue)}):",
            queue_view,
            "",
            logs,
        ]
    )


def _queue_view(system: str) -> str:
    command = SYSTEMS[system].queue
    if not shutil.which(command[0]):
        return f"  ({command[0]} not found here)"
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
        self.settings = batch_settings(
            self.cluster,
            options.cluster_options,
            threads_per_task=options.threads_per_task,
            memory_per_task=options.memory_per_task,
            processes_per_gpu=options.processes_per_gpu,
        )
        self._check_gpus(options)
        self.jobs = options.jobs
        if options.adapt is None and self.jobs is None:
            max_jobs = int(setting("batch.max-jobs"))
            self.jobs = jobs_for(ncalculations, self.settings.workers_per_job, max_jobs)

    def _check_gpus(self, options: Options) -> None:
        """A run that needs GPUs (a model chemistry with device ``gpu``: :attr:`needs_gpus`, or ``gpus=``) on jobs
        without any is refused; one that only may use them (``auto``) runs on their CPUs."""
        asked = self.needs_gpus or bool(options.gpus)
        if not asked or self.settings is None or self.settings.gpus_per_job:
            return
        system = self.settings.system
        raise InvalidArgument(
            "the run asks for GPUs, but the profile has no GPU partition: set qcmb_dask.batch.gpus-per-job and the "
            f"GPU queue in a profile (jobqueue: {{{system}: {{queue: <the GPU partition>, gpus-per-job: 4, ...}}}}) "
            "or in cluster_options (gpus_per_job=4, queue=...), or place the fragments on CPUs (the program's device "
            f"keyword). Now its {system.upper()} jobs ask for no GPU (profile {self.settings.profile})."
        )

    def consider(self, estimate, programs, store_root, longest=None) -> None:
        """Refuse, before anything is submitted, a run whose longest fragment no job's walltime can hold."""
        super().consider(estimate, programs, store_root, longest)
        settings = self.settings
        if longest is None or settings is None or not settings.walltime_s:
            return
        seconds, label = longest[0] / settings.threads_per_task, longest[1]
        if settings.lifetime is not None:
            usable, kept = settings.lifetime[0], "retire at their --lifetime"
        else:
            usable, kept = settings.walltime_s - (settings.margin_s or 0.0), f"keep {settings.margin_s or 0:.0f} s free"
        if seconds <= usable:
            return
        walltime = settings.kwargs.get("walltime")
        message = (
            f"Fragment {label} is estimated at {duration(seconds)} on {settings.threads_per_task} core(s), but a job's "
            f"walltime of {walltime} (from {settings.sources.get('walltime', 'dask-jobqueue')}) leaves "
            f"{duration(usable)} for fragments (workers {kept}): every job would end before it finishes. Ask for a "
            "longer walltime, or more cores per fragment (threads_per_task). The estimate is qcmb_dask's cost model, "
            "refined by the times this store measured; if it is wrong for your program, "
            "qcmb_dask.batch.longer-than-walltime: warn runs it anyway, each on a fresh job."
        )
        if longer_than_walltime() == "warn":
            warnings.warn(message, SettingWarning, stacklevel=2)
        else:
            raise InvalidArgument(message)

    @contextlib.contextmanager
    def connect(self, options: Options, ncalculations: int, setup: ClientSetup):
        if self.settings is None:
            self.check(options, ncalculations)
        self._check_gpus(options)  # needs_gpus may have been set after check
        adapt = tuple(options.adapt) if options.adapt else None
        with batch_client(
            self.settings,
            jobs=self.jobs,
            adapt=adapt,
            scheduler_settings=scheduler_settings(batch=True),
            announce=self.announce,
        ) as client:
            setup(client)
            settings = self.settings
            workers = settings.workers_per_job * (adapt[1] if adapt else self.jobs)
            resources = res.Resources(
                workers, settings.threads_per_task, settings.memory_per_task, settings.task_config
            )
            amount = f"adapt {adapt[0]}-{adapt[1]} jobs" if adapt else f"{self.jobs} job(s)"
            where = f"qcmb_dask: on {settings.system.upper()} jobs ({amount})"
            # the GPU workers expected (all jobs running; the placement counts on them as on the workers)
            gpu_workers = settings.gpu_workers_per_job * (adapt[1] if adapt else self.jobs)
            if gpu_workers:
                where += (
                    f"\nqcmb_dask: each job has {settings.gpus_per_job} GPU(s), {settings.processes_per_gpu} "
                    f"worker process(es) on each: {gpu_workers} GPU worker(s) in all"
                )
            yield Connection(
                resources,
                where,
                kind=settings.system,
                client=client,
                gpu_workers=gpu_workers,
                cpu_workers_declared=bool(gpu_workers),  # the GPU preload runs in every worker of a GPU job
            )


def _tls(kwargs: dict) -> dict:
    """TLS for the scheduler and the jobs' workers (:mod:`qcmb_dask.clusters.security`), unless the settings
    bring their own ``security``. Temporary credentials reach the jobs as files that dask-jobqueue writes to the
    credentials directory (readable by the user only) and removes when the cluster closes."""
    if "security" in kwargs:
        return {}
    tls = security.for_new_cluster()
    if tls is None:
        return {}
    extra = {"security": tls}
    if "shared_temp_directory" not in kwargs:
        extra["shared_temp_directory"] = str(security.private_directory(setting("batch.credentials-directory")))
    return extra


def preview_job_script(settings: BatchSettings) -> str:
    """The job script these settings submit, with a placeholder scheduler address; submits nothing."""
    import sys

    job_class = settings.cluster_class.job_cls
    kwargs = {k: v for k, v in settings.kwargs.items() if k != "scheduler_options"}
    kwargs.setdefault("python", sys.executable)
    log_directory = kwargs.get("log_directory")
    created = bool(log_directory) and not os.path.exists(log_directory)
    try:
        compat.renamed_keys_translated()
        script = job_class(scheduler="tcp://SCHEDULER:8786", name="WORKER-NAME", **kwargs).job_script()
    finally:
        if created:  # the job class makes the log directory; a preview leaves no trace
            with contextlib.suppress(OSError):
                os.rmdir(log_directory)
    origins = [
        f"# qcmb_dask:   {key} = {_shown(settings, key)!r}  ({where})" for key, where in settings.sources.items()
    ]
    origins.append("# qcmb_dask:   every other setting: dask-jobqueue's default")
    notes = "".join(f"# qcmb_dask: {note}\n" for note in settings.notes)
    return (
        script + notes + "# qcmb_dask: where each setting came from (later layers win):\n" + "\n".join(origins) + "\n"
    )


def _shown(settings: BatchSettings, key: str):
    if key in settings.task_config:
        return settings.task_config[key]
    if key == "gpus_per_job":
        return settings.gpus_per_job
    return settings.kwargs.get("job_name" if key == "name" else key)
