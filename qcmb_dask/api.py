"""The public entry points: ``compute``, ``plan``, ``build_graph``. Thin: the rooms below own the logic."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from . import config, programs
from .clusters import open_session
from .graph import build
from .inputs import InputLike
from .plan import Plan, make_plan
from .progress import ProgressArg, Reporter
from .resources import in_process


def compute(
    input: InputLike,
    cluster: Any = None,
    *,
    n_workers: Optional[int] = None,
    threads_per_task: Optional[int] = None,
    memory_per_task: Optional[float] = None,
    harnesses: Sequence = (),
    cache: Any = None,
    progress: ProgressArg = None,
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
        A ``distributed.Client``, a Dask cluster object or a ``"tcp://host:port"`` address: used and left running.
    n_workers, threads_per_task, memory_per_task
        Fragments run at once, cores per fragment, GiB per fragment. Defaults fill the machine without
        oversubscribing it (embedded cluster) or give each fragment one core (a cluster you pass).
    harnesses
        QCEngine ``ProgramHarness`` instances to register here and on every worker.
    cache
        The on-disk fragment result store is not part of this version; only ``None``/``False`` are accepted.
    progress
        ``True``, ``False``, ``"auto"`` (print when stderr is a terminal) or a callable receiving each
        k-body-truncated :class:`~qcmb_dask.analysis.LevelResult` as it completes.
    ordering
        ``"free"`` (default, every fragment independent) or ``"by_level"`` (level k waits for level k-1).

    Examples
    --------
    >>> import qcmb_dask
    >>> result = qcmb_dask.compute("examples/water-trimer.json")          # doctest: +SKIP
    >>> result.properties.cp_corrected_interaction_energy                  # doctest: +SKIP
    """
    if cache not in (None, False):
        raise ValueError(
            f"cache={cache!r}: the on-disk fragment result store is not available in this version of qcmb_dask; "
            "use cache=False (or leave it out)."
        )
    programs.register(harnesses)
    the_plan = make_plan(input)  # validates everything before a single task is submitted
    reporter = Reporter(config.resolve(progress, "progress"))
    with open_session(
        cluster,
        n_workers=n_workers,
        threads_per_task=config.resolve(threads_per_task, "threads-per-task"),
        memory_per_task=config.resolve(memory_per_task, "memory-per-task"),
        harnesses=harnesses,
        ncalculations=len(the_plan),
    ) as session:
        graph = build(
            the_plan, task_config=session.resources.task_config(), ordering=config.resolve(ordering, "ordering")
        )
        return session.run(graph, reporter, the_plan.bsse_type)


def plan(input: InputLike) -> Plan:
    """What ``compute`` would run, without running it.

    Examples
    --------
    >>> p = qcmb_dask.plan("examples/water-trimer.json")   # doctest: +SKIP
    >>> len(p)       # number of QC calculations            # doctest: +SKIP
    >>> print(p)     # counts per model chemistry and n-body level  # doctest: +SKIP
    """
    return make_plan(input)


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
    the_plan = make_plan(input)
    resources = in_process(
        config.resolve(threads_per_task, "threads-per-task") or 1, config.resolve(memory_per_task, "memory-per-task")
    )
    return build(the_plan, task_config=resources.task_config(), ordering=config.resolve(ordering, "ordering")).result
