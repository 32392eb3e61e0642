"""The public entry points: ``compute``, ``plan``, ``build_graph``, ``job_script``, ``timeline``.

Orchestration only: options -> backend -> plan -> session -> finish. Each step's logic lives in its floor.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Union

from qcmb_dask import preflight, programs, store
from qcmb_dask.diagnostics import provenance, runlog
from qcmb_dask.diagnostics.progress import ProgressArg, Reporter
from qcmb_dask.errors import FragmentsFailed, InvalidArgument, summary_lines
from qcmb_dask.interrupts import as_interrupts
from qcmb_dask.options import Options, check_harnesses, document
from qcmb_dask.planning import cost_history, derivatives, validate
from qcmb_dask.planning.inputs import InputLike
from qcmb_dask.planning.plan import Plan, make_plan
from qcmb_dask.worker.analysis import Outcome, PartialResult
from qcmb_dask.worker.fragment import RunPolicy

if TYPE_CHECKING:
    from dask.delayed import Delayed
    from qcmanybody.models.v1 import ManyBodyResult as ManyBodyResultV1
    from qcmanybody.models.v2 import ManyBodyResult

logger = logging.getLogger("qcmb_dask")

#: what ``compute`` returns: QCManyBody's result (of the input's schema version), or the levels that could be
#: assembled with ``on_error="partial"``
Result = Union["ManyBodyResult", "ManyBodyResultV1", PartialResult]  # noqa: UP007  (a runtime alias, read on 3.10)


@document(
    "jobs",
    "adapt",
    "cluster_options",
    "n_workers",
    "threads_per_task",
    "memory_per_task",
    "cache",
    "retries",
    "timeout_per_task",
    "escalate",
    "on_error",
    "progress",
    "report",
    "ordering",
)
def compute(
    input: InputLike,
    cluster: Any = None,
    *,
    jobs: int | None = None,
    adapt: tuple[int, int] | None = None,
    cluster_options: dict | None = None,
    n_workers: int | None = None,
    threads_per_task: int | None = None,
    memory_per_task: float | str | None = None,
    harnesses: Sequence = (),
    cache: Any = None,
    retries: int | None = None,
    timeout_per_task: float | str | None = None,
    escalate: bool | None = None,
    on_error: str | None = None,
    progress: ProgressArg = None,
    callback: Callable[[str, int, int, int], None] | None = None,
    report: str | None = None,
    ordering: str | None = None,
    screening: dict | str | None = None,
) -> Result:
    """Run a many-body expansion as a Dask task graph and return QCManyBody's ManyBodyResult.

    Parameters
    ----------
    input
        A QCManyBody ``ManyBodyInput`` (v1 or v2), a dict in its layout, or a JSON/YAML file path.
        The result has the input's schema version (v1 in, v1 out; otherwise v2).
    cluster
        ``None`` (default): this process's embedded ``distributed.LocalCluster``, sized to this machine, started
        once and reused by later calls (closed by :func:`qcmb_dask.close`, after ``qcmb_dask.local.idle-timeout``
        seconds without a run, or at exit); a plan too small to be worth starting workers runs in this process.
        ``"local"``: a LocalCluster of this call's own, closed afterwards.
        ``"sync"``: in-process, one fragment at a time (the reference executor).
        ``"slurm"``, ``"pbs"``, ``"sge"``, ``"lsf"``, ``"htcondor"``, ``"oar"``, ``"moab"`` or a profile file
        (``"mysite.yaml"``, dask-jobqueue's format; see ``cluster_configs/``): batch jobs through
        dask-jobqueue, submitted from here, cancelled when this returns, raises or is interrupted.
        ``"mpi"``: inside an allocation, the ranks of ``mpirun -n N python script.py`` (dask-mpi: rank 0 the
        scheduler, rank 1 the script, ranks 2 .. N-1 the workers).
        A ``distributed.Client``, a Dask cluster object or a ``"tcp://host:port"`` address: used and left running.
    harnesses
        QCEngine ``ProgramHarness`` instances to register here and on every worker.
    callback
        Called as ``callback(label, nbody, done, total)`` after every fragment calculation (``done`` of
        ``total`` in the whole run), for a progress display of your own.
    screening
        Distance cutoffs per n-body order in Angstrom, ``{2: 12.0, 3: 8.0}`` (or ``"2=12,3=8"``): a k-mer is
        computed only if every pair of its fragments is within the k-body cutoff (the distance of two
        fragments: their closest pair of atoms) and every (k-1)-mer inside it is; the result is the sum of the
        kept k-mers' increments (nocp and vmfc), with the cutoffs, counts and an estimate of the dropped energy
        in ``extras["qcmb_dask"]["screening"]``. Also read from the input's
        ``specification.extras["qcmb_dask"]["screening"]``. Default: every k-mer, QCManyBody's own analysis.
    {parameters}

    Every argument left as ``None`` comes from the ``qcmb_dask`` section of the Dask config. Nothing is
    submitted before the input, the arguments and the output paths are checked.

    Examples
    --------
    >>> import qcmb_dask
    >>> result = qcmb_dask.compute("examples/water-trimer.json")          # doctest: +SKIP
    >>> result.properties.cp_corrected_interaction_energy                  # doctest: +SKIP
    """
    began, began_epoch = time.perf_counter(), time.time()
    options = Options.resolve(
        jobs=jobs,
        adapt=adapt,
        cluster_options=cluster_options,
        n_workers=n_workers,
        threads_per_task=threads_per_task,
        memory_per_task=memory_per_task,
        retries=retries,
        timeout_per_task=timeout_per_task,
        escalate=escalate,
        on_error=on_error,
        progress=progress,
        report=report,
        ordering=ordering,
    )
    store_root, backend = open_run(cluster, cache, harnesses)
    the_plan = make_plan(input, options.max_calculations, screening)  # checked before anything is submitted
    derivatives.of_plan(the_plan)
    backend.check(options, len(the_plan))
    if backend.programs_run_here:  # elsewhere the programs may live only on the workers (a module load)
        validate.check_programs(validate.plan_requests(the_plan), installed=True)
    if store_root is not None:
        store.prepare(store_root)
    if backend.programs_run_here:
        preflight.check(the_plan, store_root, options.on_error, announce=logger.info)
    the_plan = cost_history.refine(the_plan, store_root)  # what earlier runs measured orders this one
    backend.consider(the_plan.total_cost(), sorted({t.program.lower() for t in the_plan}), store_root)
    policy = RunPolicy(str(store_root) if store_root else None, options.timeout_per_task, options.escalate)
    reporter = Reporter(options.progress, callback=callback)
    logger.info("%s", the_plan)  # a batch job's log shows what the run is, as the terminal's plan table does
    backend.announce = reporter.say
    with as_interrupts(), backend.session(options, harnesses, len(the_plan)) as session:
        finished, _ = run_plan(session, the_plan, options, policy, reporter, store_root, began_epoch)
    if options.report is not None:
        from qcmb_dask.diagnostics import plots

        plots.report(finished, _records(reporter), str(options.report))
        reporter.say(f"qcmb_dask: report written to {options.report}")
    reporter.say(f"qcmb_dask: done in {time.perf_counter() - began:.1f} s")
    return finished


def run_plan(session, the_plan: Plan, options: Options, policy: RunPolicy, reporter: Reporter, store_root, began_epoch):
    """One input's graph on an open session, to its result: the core of ``compute``, and of every step of an
    optimization (one session for all its steps). Returns the result (as :func:`_finish` gives it) and the graph."""
    from qcmb_dask.graph import build

    task_config = session.resources.task_config(retries=options.retries)
    graph = build(
        the_plan,
        task_config=task_config,
        policy=policy,
        ordering=options.ordering,
        workers=session.resources.n_workers,
    )
    try:
        outcome = session.run(graph, reporter, the_plan.bsse_type)
    finally:
        runlog.remember(reporter.log)
        threads = session.resources.threads_per_task
        cost_history.record(store_root, cost_history.measured_ratios(the_plan.tasks, _records(reporter), threads))
    record = provenance.run_record(
        run_id=graph.run_id,
        cluster=session.describe(),
        stats=outcome.stats,
        store_root=store_root,
        began=began_epoch,
        log=reporter.log,
        level_labels=the_plan.level_labels,
    )
    return _finish(outcome, options.on_error, store_root, reporter, record), graph


def open_run(cluster: Any, cache: Any, harnesses: Sequence):
    """The first steps of every run (``compute``, ``compute_many``): harnesses checked and registered here, the
    result store's location, the backend of ``cluster`` (QCEngine's set-up begun where fragments run here)."""
    from qcmb_dask import clusters

    check_harnesses(harnesses)
    store_root = store.resolve(cache)
    backend = clusters.resolve(cluster)
    backend.prepare()
    programs.register(harnesses)
    return store_root, backend


def timeline(result: Any = None) -> list[dict[str, Any]]:
    """The fragments of a run: one dict each with ``label``, ``nbody``, ``ok``, ``from_store``, ``start`` and
    ``stop`` (epoch seconds) and ``worker``; for ``qcmb_dask.plots.timeline``.

    ``result``: a result ``compute`` returned (a ManyBodyResult or PartialResult), one read back from JSON, or
    the path of a saved one; without it, the last ``compute`` in this process.
    """
    if result is not None:
        record = provenance.record_of(result)
        if record is None:
            raise InvalidArgument(
                "this result has no qcmb_dask record (extras['qcmb_dask']): it was not made by qcmb_dask.compute. "
                "Pass a result compute returned (or its saved JSON), or call timeline() right after a run."
            )
        return list(record.get("timeline", []))
    log = runlog.last()
    return list(log.records) if log is not None else []


def _records(reporter: Reporter) -> list:
    return list(reporter.log.records) if reporter.log is not None else []


def _finish(outcome: Outcome, on_error: str, store_root, reporter: Reporter, record: dict):
    """Report where results came from; the result, a PartialResult (both with ``record`` in their extras), or
    FragmentsFailed."""
    reporter.stats(outcome.stats, store_root)
    if not outcome.failures:
        return provenance.with_record(outcome.result, record)
    if on_error == "partial":
        highest = outcome.levels[max(outcome.levels)] if outcome.levels else None
        extras = {provenance.EXTRAS_KEY: record}
        partial = PartialResult(highest, outcome.levels, outcome.failures, outcome.stats, extras)
        reporter.say(
            f"qcmb_dask: {len(outcome.failures)} fragment(s) failed; returning the expansion through "
            f"{partial.nbody}-body (on_error='partial'):\n" + "\n".join(summary_lines(outcome.failures))
        )
        return partial
    raise FragmentsFailed(
        outcome.failures, store=str(store_root) if store_root else False, levels_done=sorted(outcome.levels)
    )


def progress_in_store(
    input: InputLike, *, cache: Any = None, harnesses: Sequence = (), screening: Any = None
) -> dict[int, tuple[int, int]]:
    """How far a run of ``input`` got, from the result store alone (a run under way, ended, or killed):
    n-body level -> (calculations in the store, calculations planned). Runs nothing. ``screening``: the
    screened run's cutoffs, as for ``compute``.

    Examples
    --------
    >>> qcmb_dask.progress_in_store("hexamer.json", cache="/shared/qcmb-store")   # doctest: +SKIP
    {1: (6, 6), 2: (30, 36), 3: (0, 40)}
    """
    from qcmb_dask.graph import build
    from qcmb_dask.qcmanybody_adapter import prepare_parent
    from qcmb_dask.worker.fragment import in_store

    the_plan = plan(input, harnesses=harnesses, cache=False, screening=screening)
    root = store.resolve(cache)
    if root is None:
        raise InvalidArgument("the result store is off (cache=False): there is nothing to count progress in.")
    graph = build(the_plan, task_config={}, policy=RunPolicy(str(root)))
    parent = prepare_parent(the_plan.input.model.molecule)
    counts: dict[int, list[int]] = {}
    for task in the_plan:
        tally = counts.setdefault(task.nbody, [0, 0])
        parts = graph.hessian_parts.get(task.label) or (graph.jobs[task.label],)  # a Hessian from gradients: all
        tally[0] += all(in_store(parent, job) for job in parts)
        tally[1] += 1
    return {nbody: (done, total) for nbody, (done, total) in sorted(counts.items())}


def plan(input: InputLike, *, harnesses: Sequence = (), cache: Any = None, screening: Any = None) -> Plan:
    """What ``compute`` would run, without running it. ``harnesses``: programs of your own, as for ``compute``.

    The estimates are the cost model's, times what earlier runs measured for the same program, method,
    basis and driver where the result store ``cache`` (as for ``compute``; default the configured one)
    holds such measurements (:mod:`qcmb_dask.planning.cost_history`). ``screening``: as for ``compute``.

    Examples
    --------
    >>> p = qcmb_dask.plan("examples/water-trimer.json")   # doctest: +SKIP
    >>> len(p)       # number of QC calculations            # doctest: +SKIP
    >>> print(p)     # counts per model chemistry and n-body level  # doctest: +SKIP
    """
    from qcmb_dask.worker.warmup import prime_in_background

    check_harnesses(harnesses)
    prime_in_background()  # a plan is usually followed by a run: QCEngine's first-call set-up goes on meanwhile
    programs.register(harnesses)
    the_plan = make_plan(input, Options.resolve().max_calculations, screening)
    return cost_history.refine(the_plan, store.resolve(cache))


@document("threads_per_task", "memory_per_task", "cache", "retries", "escalate", "ordering")
def build_graph(
    input: InputLike,
    *,
    cache: Any = None,
    retries: int | None = None,
    memory_per_task: float | str | None = None,
    threads_per_task: int | None = None,
    harnesses: Sequence = (),
    escalate: bool | None = None,
    ordering: str | None = None,
    screening: Any = None,
) -> Delayed:
    """The expansion as a Dask ``Delayed``, for Dask users: ``client.compute(graph)`` (or ``.compute()``) gives
    the ManyBodyResult, ``.visualize()`` draws it.

    The graph keeps ``compute``'s promises wherever it runs: finished fragments go to the result store as they
    finish and are read back from it (a rerun, or another input sharing calculations, computes only what is
    missing), transient failures are retried, each fragment is told ``threads_per_task`` cores (1 by default) and
    a share of the memory of the worker that runs it (not of this machine), and ``harnesses`` are registered on
    every worker that runs one of their fragments. What only ``compute`` does: progress, the live page, the
    result's ``extras["qcmb_dask"]``, sizing the cluster, and ``timeout_per_task`` (it needs a nanny to restart
    a worker).

    The graph holds the parent-molecule node, one node per fragment calculation, one node per n-body
    level (the k-body-truncated result) and the final analysis node.

    Parameters
    ----------
    input
        As for :func:`compute`.
    harnesses
        QCEngine ``ProgramHarness`` instances, as for :func:`compute`.
    screening
        Distance cutoffs per n-body order, as for :func:`compute`.
    {parameters}

    Examples
    --------
    >>> graph = qcmb_dask.build_graph("examples/water-trimer.json", cache="/shared/store")   # doctest: +SKIP
    >>> result = client.compute(graph).result()                                           # doctest: +SKIP
    """
    from qcmb_dask.graph import build

    options = Options.resolve(
        threads_per_task=threads_per_task,
        memory_per_task=memory_per_task,
        retries=retries,
        escalate=escalate,
        ordering=ordering,
    )
    check_harnesses(harnesses)
    programs.register(harnesses)
    the_plan = make_plan(input, options.max_calculations, screening)
    store_root = store.resolve(cache)
    if store_root is not None:
        store.prepare(store_root)
    task_config = {"ncores": options.threads_per_task or 1, "nnodes": 1, "retries": options.retries}
    if options.memory_per_task:
        task_config["memory"] = options.memory_per_task  # else: the running worker's share (worker.fragment)
    policy = RunPolicy(str(store_root) if store_root else None, None, options.escalate, harnesses=tuple(harnesses))
    return build(the_plan, task_config=task_config, policy=policy, ordering=options.ordering).result


@document("cluster_options", "threads_per_task", "memory_per_task")
def job_script(
    cluster: str = "slurm",
    *,
    cluster_options: dict | None = None,
    threads_per_task: int | None = None,
    memory_per_task: float | str | None = None,
) -> str:
    """The job script ``compute(..., cluster=cluster, cluster_options=...)`` would submit; submits nothing.

    The scheduler address in the script is a placeholder: the real one exists only once ``compute`` starts
    the scheduler.

    Parameters
    ----------
    cluster
        A batch system name or a profile file, as for :func:`compute`.
    {parameters}

    Examples
    --------
    >>> print(qcmb_dask.job_script("slurm", cluster_options={"account": "chem42"}))  # doctest: +SKIP
    """
    from qcmb_dask.clusters.jobqueue import preview_job_script
    from qcmb_dask.clusters.jobqueue_settings import resolve as resolve_settings

    if not isinstance(cluster, (str, os.PathLike)):
        raise InvalidArgument(
            f"job_script: cluster={cluster!r}: expected a batch system name (slurm, pbs, sge, lsf, ...) or a profile "
            "file (.yaml)."
        )
    options = Options.resolve(threads_per_task=threads_per_task, memory_per_task=memory_per_task)
    settings = resolve_settings(
        cluster, cluster_options, threads_per_task=options.threads_per_task, memory_per_task=options.memory_per_task
    )
    return preview_job_script(settings)
