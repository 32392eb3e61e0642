"""A dask-jobqueue cluster for one ``compute`` call: jobs submitted, replaced when they end, all cancelled after.

- Jobs that end (walltime reached, ``scancel``, node lost) are replaced while work remains. dask-jobqueue
  does not do this by itself: a job that ended stays in the cluster's plan, so neither ``scale`` nor
  ``adapt`` sees a missing job (dask/dask-jobqueue#691). :class:`JobKeeper` forgets ended jobs.
- Jobs waiting in the queue are waited for, however long, with the queue's reason said every
  ``qcmb_dask.batch.queue-report-interval`` seconds; a job that ran and ended (or ran for
  ``batch.connect-timeout`` seconds) without a worker, a refused submission, or a ``batch.worker-timeout`` the
  user set ends the wait: :class:`WorkersNeverArrived` or :class:`JobsRefused` with the job script, the
  queue's view and the job logs.
- The cluster is closed and its jobs cancelled when compute returns, raises or is interrupted (Ctrl-C).
"""

from __future__ import annotations

import asyncio
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
from qcmb_dask.clusters.jobqueue_settings import BatchSettings, batch_settings, is_batch, jobs_for
from qcmb_dask.errors import InvalidArgument, JobsRefused, SettingWarning, WorkersNeverArrived
from qcmb_dask.options import Options, setting
from qcmb_dask.planning.cost import duration

logger = logging.getLogger("qcmb_dask")


class JobKeeper:
    """Keeps ``jobs`` jobs (or lets ``adapt`` decide) by forgetting jobs that ended.

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
        )
        self.jobs = options.jobs
        if options.adapt is None and self.jobs is None:
            max_jobs = int(setting("batch.max-jobs"))
            self.jobs = jobs_for(ncalculations, self.settings.workers_per_job, max_jobs)

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
        if setting("batch.longer-than-walltime") == "warn":
            warnings.warn(message, SettingWarning, stacklevel=2)
        else:
            raise InvalidArgument(message)

    @contextlib.contextmanager
    def connect(self, options: Options, ncalculations: int, setup: ClientSetup):
        if self.settings is None:
            self.check(options, ncalculations)
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
            yield Connection(resources, where, kind=settings.system, client=client)


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
    return settings.kwargs.get("job_name" if key == "name" else key)
