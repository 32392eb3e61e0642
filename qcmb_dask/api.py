"""The public entry points: ``compute``, ``plan``, ``build_graph``. Thin: the rooms below own the logic."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Optional, Sequence, Tuple

from . import config, cost_history, programs, store, validate
from .analysis import Outcome, PartialResult
from .batch_settings import resolve as resolve_batch_settings
from .clusters import batch_request, open_session
from .errors import FragmentsFailed
from .fragment import RunPolicy
from .graph import build
from .inputs import InputLike
from .mpi import check_launch as check_mpi_launch
from .plan import Plan, make_plan
from .progress import ProgressArg, Reporter
from .resources import in_process

ON_ERROR = ("raise", "partial")


def compute(
    input: InputLike,
    cluster: Any = None,
    *,
    jobs: Optional[int] = None,
    adapt: Optional[Tuple[int, int]] = None,
    cluster_options: Optional[dict] = None,
    n_workers: Optional[int] = None,
    threads_per_task: Optional[int] = None,
    memory_per_task: Optional[float] = None,
    harnesses: Sequence = (),
    cache: Any = None,
    retries: Optional[int] = None,
    timeout_per_task: Optional[float] = None,
    escalate: Optional[bool] = None,
    on_error: Optional[str] = None,
    progress: ProgressArg = None,
    callback: Optional[Callable[[str, int, int, int], None]] = None,
    report: Optional[str] = None,
    ordering: Optional[str] = None,
):
    """Run a many-body expansion as a Dask task graph and return QCManyBody's ManyBodyResult.

    Parameters
    ----------
    input
        A QCManyBody ``ManyBodyInput`` (v1 or v2), a dict in its layout, or a JSON/YAML file path.
        The result has the input's schema version (v1 in, v1 out; otherwise v2).
    cluster
        ``None``/``"local"``: an embedded ``distributed.LocalCluster`` sized to this machine, closed afterwards.
        ``"sync"``: in-process, one fragment at a time (the reference executor).
        ``"slurm"``, ``"pbs"``, ``"sge"``, ``"lsf"``, ``"htcondor"``, ``"oar"``, ``"moab"`` or a profile file
        (``"mysite.yaml"``, dask-jobqueue's format; see ``cluster_configs/``): batch jobs through
        dask-jobqueue, submitted from here, cancelled when this returns, raises or is interrupted.
        ``"mpi"``: inside an allocation, the ranks of ``mpirun -n N python script.py`` (dask-mpi: rank 0 the
        scheduler, rank 1 the script, ranks 2 .. N-1 the workers).
        A ``distributed.Client``, a Dask cluster object or a ``"tcp://host:port"`` address: used and left running.
    jobs, adapt
        Batch clusters: ``jobs=N`` keeps N jobs (a job that ends is replaced while work remains), or
        ``adapt=(min, max)`` lets Dask choose between min and max jobs. Default: enough jobs for every
        calculation, at most ``qcmb_dask.batch.max-jobs`` (10).
    cluster_options
        Batch clusters: dask-jobqueue settings for this call (``queue``, ``account``, ``cores``, ``memory``,
        ``walltime``, ``job_script_prologue``, ``interface``, ...), over the dask config and the profile.
    n_workers, threads_per_task, memory_per_task
        Fragments run at once, cores per fragment, GiB per fragment. Defaults fill the machine without
        oversubscribing it (embedded cluster) or give each fragment one core (a cluster you pass).
    harnesses
        QCEngine ``ProgramHarness`` instances to register here and on every worker.
    cache
        The fragment result store: a directory, ``True`` (the default: ``~/.cache/qcmb_dask/results``) or
        ``False``. Finished fragments are written there as they finish; a rerun of the same input (after a
        crash, Ctrl-C or failure) computes only the missing ones, and other inputs reuse identical calculations.
    retries
        Reruns of a calculation that fails with a random (transient) error (QCEngine's ``RandomError``);
        input and convergence errors are not retried. Default 2.
    timeout_per_task
        Seconds a fragment may run; a fragment over it has its worker ended (freeing the core) and is tried
        again like a fragment whose worker was lost, up to ``allowed-failures`` times. Needs worker processes.
    escalate
        On a convergence failure, try once more with the program's documented fallback
        (PySCF: ``max_cycle`` 200 and ``level_shift`` 0.2). Off by default.
    on_error
        ``"raise"`` (default): when fragments fail, the others still finish and are stored, then
        :class:`~qcmb_dask.errors.FragmentsFailed` lists every failure. ``"partial"``: return a
        :class:`~qcmb_dask.analysis.PartialResult` with the highest complete n-body level instead.
    progress
        ``"auto"`` (default): a live progress line with an ETA in a terminal, an HTML block in Jupyter,
        nothing when not interactive (batch jobs, pipes; the ``qcmb_dask`` logger still gets every line).
        ``True``: always print to stderr; ``False``: the logger only; or a callable receiving each
        k-body-truncated :class:`~qcmb_dask.analysis.LevelResult` as it completes.
    callback
        Called as ``callback(label, nbody, done, total)`` after every fragment calculation (``done`` of
        ``total`` in the whole run), for a progress display of your own.
    report
        A path: write an HTML report there at the end (summary table, n-body convergence plot, fragment
        timeline; see :mod:`qcmb_dask.plots`).
    ordering
        ``"free"`` (default, every fragment independent) or ``"by_level"`` (level k waits for level k-1).

    Every argument left as ``None`` comes from the ``qcmb_dask`` section of the Dask config.

    Examples
    --------
    >>> import qcmb_dask
    >>> result = qcmb_dask.compute("examples/water-trimer.json")          # doctest: +SKIP
    >>> result.properties.cp_corrected_interaction_energy                  # doctest: +SKIP
    """
    on_error = config.resolve(on_error, "on-error")
    if on_error not in ON_ERROR:
        raise validate.InvalidArgument(f"on_error={on_error!r}: expected one of {ON_ERROR}.")
    retries = config.resolve(retries, "retries")
    timeout_per_task = config.resolve(timeout_per_task, "timeout-per-task")
    threads_per_task = config.resolve(threads_per_task, "threads-per-task")
    memory_per_task = config.resolve(memory_per_task, "memory-per-task")
    validate.check_arguments(
        n_workers=n_workers,
        threads_per_task=threads_per_task,
        memory_per_task=memory_per_task,
        retries=retries,
        timeout_per_task=timeout_per_task,
        jobs=jobs,
        adapt=adapt,
        harnesses=harnesses,
    )
    if report is not None:
        validate.check_output_path(report, "report=")
    store_root = store.resolve(cache)
    programs.register(harnesses)
    the_plan = make_plan(input, _max_calculations())  # validates everything before a single task is submitted
    batch = batch_request(
        cluster,
        jobs=jobs,
        adapt=adapt,
        cluster_options=cluster_options,
        n_workers=n_workers,
        threads_per_task=threads_per_task,
        memory_per_task=memory_per_task,
        ncalculations=len(the_plan),
    )
    if cluster == "mpi":
        check_mpi_launch(timeout_per_task)  # refused on every rank alike, before anything starts
    if cluster in (None, "local", "sync"):
        # The programs run here: they must be installed here. (On a cluster you pass, they may live
        # only on the workers, e.g. behind a module load in the job script.)
        validate.check_programs(validate.plan_requests(the_plan), installed=True)
    if store_root is not None:
        store.prepare(store_root)
    the_plan = cost_history.refine(the_plan, store_root)  # what earlier runs measured orders this one
    policy = RunPolicy(
        store=str(store_root) if store_root else None,
        timeout=float(timeout_per_task) if timeout_per_task else None,
        escalate=bool(config.resolve(escalate, "escalate")),
    )
    reporter = Reporter(config.resolve(progress, "progress"), callback=callback)
    with open_session(
        cluster,
        n_workers=n_workers,
        threads_per_task=threads_per_task,
        memory_per_task=memory_per_task,
        harnesses=harnesses,
        ncalculations=len(the_plan),
        timeout_per_task=policy.timeout,
        batch=batch,
    ) as session:
        graph = build(
            the_plan,
            task_config=session.resources.task_config(retries=retries),
            policy=policy,
            ordering=config.resolve(ordering, "ordering"),
        )
        try:
            outcome = session.run(graph, reporter, the_plan.bsse_type)
        finally:
            _LAST_RUN["timeline"] = list(reporter.records)
            measured = cost_history.measured_ratios(
                the_plan.tasks, reporter.records, session.resources.threads_per_task
            )
            cost_history.record(store_root, measured)
    finished = _finish(outcome, on_error, store_root, reporter)
    if report is not None and not isinstance(finished, PartialResult):
        from . import plots

        plots.report(finished, reporter.records, str(report))
        reporter.say(f"qcmb_dask: report written to {report}")
    return finished


def _max_calculations() -> Optional[int]:
    return config.resolve(None, "max-calculations")


#: what the last compute() in this process left behind for timeline()
_LAST_RUN: dict = {"timeline": []}


def timeline() -> list:
    """The fragments of the last ``compute`` in this process: one dict each with ``label``, ``nbody``, ``ok``,
    ``from_store``, ``start`` and ``stop`` (epoch seconds) and ``worker``; for ``qcmb_dask.plots.timeline``."""
    return list(_LAST_RUN["timeline"])


def _finish(outcome: Outcome, on_error: str, store_root, reporter: Reporter):
    """Report where results came from; the result, a PartialResult, or FragmentsFailed."""
    reporter.stats(outcome.stats, store_root)
    if not outcome.failures:
        return outcome.result
    if on_error == "partial":
        highest = outcome.levels[max(outcome.levels)] if outcome.levels else None
        partial = PartialResult(highest, outcome.levels, outcome.failures, outcome.stats)
        reporter.say(
            f"qcmb_dask: {len(outcome.failures)} fragment(s) failed; returning the expansion through "
            f"{partial.nbody}-body (on_error='partial')"
        )
        return partial
    raise FragmentsFailed(
        outcome.failures, store=str(store_root) if store_root else False, levels_done=sorted(outcome.levels)
    )


def plan(input: InputLike, *, harnesses: Sequence = (), cache: Any = None) -> Plan:
    """What ``compute`` would run, without running it. ``harnesses``: programs of your own, as for ``compute``.

    The estimates are the cost model's, times what earlier runs measured for the same program, method,
    basis and driver where the result store ``cache`` (as for ``compute``; default the configured one)
    holds such measurements (:mod:`qcmb_dask.cost_history`).

    Examples
    --------
    >>> p = qcmb_dask.plan("examples/water-trimer.json")   # doctest: +SKIP
    >>> len(p)       # number of QC calculations            # doctest: +SKIP
    >>> print(p)     # counts per model chemistry and n-body level  # doctest: +SKIP
    """
    validate.check_arguments(harnesses=harnesses)
    programs.register(harnesses)
    return cost_history.refine(make_plan(input, _max_calculations()), store.resolve(cache))


def build_graph(
    input: InputLike,
    *,
    threads_per_task: Optional[int] = None,
    memory_per_task: Optional[float] = None,
    ordering: Optional[str] = None,
):
    """The expansion as a Dask ``Delayed``: ``.compute()`` returns the ManyBodyResult, ``.visualize()`` draws it.

    The graph holds the parent-molecule node, one node per fragment calculation, one node per n-body
    level (the k-body-truncated result) and the final analysis node. Fragments get ``threads_per_task``
    cores each (default 1: the graph may run anywhere) and ``memory_per_task`` GiB.

    Examples
    --------
    >>> g = qcmb_dask.build_graph("examples/water-trimer.json")   # doctest: +SKIP
    >>> result = g.compute(scheduler="sync")                       # doctest: +SKIP
    """
    validate.check_arguments(threads_per_task=threads_per_task, memory_per_task=memory_per_task)
    the_plan = make_plan(input, _max_calculations())
    resources = in_process(
        config.resolve(threads_per_task, "threads-per-task") or 1, config.resolve(memory_per_task, "memory-per-task")
    )
    return build(the_plan, task_config=resources.task_config(), ordering=config.resolve(ordering, "ordering")).result


def job_script(
    cluster: str = "slurm",
    *,
    cluster_options: Optional[dict] = None,
    threads_per_task: Optional[int] = None,
    memory_per_task: Optional[float] = None,
) -> str:
    """The job script ``compute(..., cluster=cluster, cluster_options=...)`` would submit; submits nothing.

    ``cluster``: a batch system name or a profile file, as for :func:`compute`. The scheduler address in
    the script is a placeholder: the real one exists only once ``compute`` starts the scheduler.

    Examples
    --------
    >>> print(qcmb_dask.job_script("slurm", cluster_options={"account": "chem42"}))  # doctest: +SKIP
    """
    settings = resolve_batch_settings(
        cluster,
        cluster_options,
        threads_per_task=config.resolve(threads_per_task, "threads-per-task"),
        memory_per_task=config.resolve(memory_per_task, "memory-per-task"),
    )
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
    notes = "".join(f"# qcmb_dask: {note}\n" for note in settings.notes)
    return script + notes
