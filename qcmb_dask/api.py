"""The public entry points: ``compute``, ``plan``, ``build_graph``, ``job_script``, ``timeline``,
``progress_in_store``.

Each one screen: options -> :class:`~qcmb_dask.execution.run.Run` -> result. Each step's logic lives in its floor.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from qcmb_dask import programs, store
from qcmb_dask.diagnostics import provenance, runlog
from qcmb_dask.errors import InvalidArgument
from qcmb_dask.execution.run import Run, records_of
from qcmb_dask.options import RUN_OPTIONS, Options, RunOptions, check_harnesses, document
from qcmb_dask.planning import cost_history, derivatives
from qcmb_dask.planning.inputs import InputLike
from qcmb_dask.planning.plan import Plan, make_plan, only_whole_plans
from qcmb_dask.worker.analysis import Result
from qcmb_dask.worker.fragment import RunPolicy

if TYPE_CHECKING:
    from dask.delayed import Delayed
    from typing_extensions import Unpack

logger = logging.getLogger("qcmb_dask")

__all__ = ["Result", "build_graph", "compute", "job_script", "plan", "progress_in_store", "timeline"]


@document("cache", *RUN_OPTIONS)
def compute(
    input: InputLike,
    cluster: Any = None,
    *,
    harnesses: Sequence = (),
    cache: Any = None,
    callback: Callable[[str, int, int, int], None] | None = None,
    screening: dict | str | None = None,
    **options: Unpack[RunOptions],
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

        Energy thresholds per order in Eh, ``{"energy": {3: 1e-5, 4: 1e-6}}``: a k-mer is computed only when the
        ``"measure"`` of its (k-1)-mers' increments reaches its order's threshold (``"max"``, the default, ``"sum"``
        or ``"min"`` of their absolute values), or, with ``"measure": "gfn2-xtb"``, when its own GFN2-xTB
        increment does (computed first, through tblite); decided as the results arrive. ``"max_nbody": "auto"``
        with ``"tolerance"`` (Eh) stops at the order whose next level is estimated below it. ``"distance"``
        beside gives cutoffs as above. Needs the result store; the decisions are in
        ``extras["qcmb_dask"]["screening"]["energy"]``.
    {parameters}

    Every argument left as ``None`` comes from the ``qcmb_dask`` section of the Dask config. Nothing is
    submitted before the input, the arguments and the output paths are checked.

    Examples
    --------
    >>> import qcmb_dask
    >>> result = qcmb_dask.compute("examples/water-trimer.json")          # doctest: +SKIP
    >>> result.properties.cp_corrected_interaction_energy                  # doctest: +SKIP
    """
    run = Run(cluster, cache, harnesses, Options.from_call(**options), callback=callback)
    the_plan = make_plan(input, run.options.max_calculations, screening)  # checked before anything is submitted
    derivatives.of_plan(the_plan)
    run.admit([the_plan])
    if the_plan.energy_screening is not None:
        from qcmb_dask.execution import adaptive

        adaptive.admit(run, the_plan)
    the_plan = cost_history.refine(the_plan, run.store_root)  # what earlier runs measured orders this one
    estimate = the_plan.total_cost()
    if the_plan.energy_screening is not None:  # the monomers planned; the dimers alone are about n - 1 times them
        estimate *= 1.5 * max(1, the_plan.nfragments - 1)
    run.consider(estimate, [the_plan])
    logger.info("%s", the_plan)  # a batch job's log shows what the run is, as the terminal's plan table does
    with run.session() as session:
        if the_plan.energy_screening is not None:
            finished = _energy_screened(run, session, the_plan, screening)
        else:
            finished, _ = run.run_plan(session, the_plan)
    if run.options.report is not None:
        from qcmb_dask.diagnostics import plots

        plots.report(finished, records_of(run.reporter), str(run.options.report))
        run.reporter.say(f"qcmb_dask: report written to {run.options.report}")
    run.reporter.say(f"qcmb_dask: done in {run.seconds():.1f} s")
    return finished


def _energy_screened(run: Run, session, seed: Plan, screening):
    """An energy-screened expansion on an open session: the k-mers chosen as results arrive, then the kept ones
    assembled (:mod:`qcmb_dask.execution.adaptive`)."""
    from qcmb_dask.execution import adaptive

    decisions = adaptive.decide(run, session, seed)
    normalized = adaptive.through_order(seed.input, decisions.kept())
    kept = make_plan(normalized, run.options.max_calculations, screening, kept=decisions.kept())
    kept = cost_history.refine(kept, run.store_root)
    finished, _ = run.run_plan(session, kept)
    return adaptive.with_report(finished, decisions)


def timeline(result: Any = None) -> list[dict[str, Any]]:
    """The fragments of a run: one dict each with ``label``, ``nbody``, ``ok``, ``from_store``, ``start`` and
    ``stop`` (epoch seconds) and ``worker``; for ``qcmb_dask.plots.timeline``. (A result of more than 100,000
    calculations keeps its timeline as a list per field; this returns the dicts all the same.)

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
        return runlog.rows(record.get("timeline"))
    log = runlog.last()
    return list(log.records) if log is not None else []


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

    the_plan = only_whole_plans(plan(input, harnesses=harnesses, cache=False, screening=screening), "status")
    root = store.location(cache)
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
    the_plan = make_plan(input, Options.from_call().max_calculations, screening)
    return cost_history.refine(the_plan, store.location(cache))


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

    options = Options.from_call(
        threads_per_task=threads_per_task,
        memory_per_task=memory_per_task,
        retries=retries,
        escalate=escalate,
        ordering=ordering,
    )
    check_harnesses(harnesses)
    programs.register(harnesses)
    the_plan = only_whole_plans(make_plan(input, options.max_calculations, screening), "build_graph")
    store_root = store.location(cache)
    if store_root is not None:
        store.make_ready(store_root)
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
    from qcmb_dask.clusters.jobqueue_settings import batch_settings

    if not isinstance(cluster, (str, os.PathLike)):
        raise InvalidArgument(
            f"job_script: cluster={cluster!r}: expected a batch system name (slurm, pbs, sge, lsf, ...) or a profile "
            "file (.yaml)."
        )
    options = Options.from_call(threads_per_task=threads_per_task, memory_per_task=memory_per_task)
    settings = batch_settings(
        cluster, cluster_options, threads_per_task=options.threads_per_task, memory_per_task=options.memory_per_task
    )
    return preview_job_script(settings)
