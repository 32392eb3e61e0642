"""``compute_many``: many inputs (a scan, an MD trajectory, a benchmark set) as one graph on one cluster.

Orchestration only, as :mod:`qcmb_dask.api`: options -> :class:`~qcmb_dask.execution.run.Run` -> plans -> one
session -> a result per input.
A calculation two inputs share (the same monomer in every frame of a scan) is one node of the graph
(:func:`qcmb_dask.graph.build_many`), and the result store shares it with later runs as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qcmb_dask.diagnostics import provenance, runlog
from qcmb_dask.diagnostics.progress import Reporter
from qcmb_dask.errors import FragmentsFailed, InputsFailed, InvalidArgument, InvalidInput
from qcmb_dask.execution import devices
from qcmb_dask.execution.run import Run, records_of
from qcmb_dask.execution.sessions import jobs_by_key
from qcmb_dask.options import RUN_OPTIONS, Options, RunOptions, document
from qcmb_dask.planning import derivatives
from qcmb_dask.planning.plan import make_plan, only_whole_plans
from qcmb_dask.worker.analysis import Outcome, Result

if TYPE_CHECKING:
    from typing_extensions import Unpack

logger = logging.getLogger("qcmb_dask")


@document("cache", *(name for name in RUN_OPTIONS if name != "report"))
def compute_many(
    inputs: Iterable,
    cluster: Any = None,
    *,
    names: Sequence[str] | None = None,
    harnesses: Sequence = (),
    cache: Any = None,
    callback: Callable[[str, int, int, int], None] | None = None,
    screening: Any = None,
    **options: Unpack[RunOptions],
) -> list[Result]:
    """Run the expansions of many inputs as one Dask graph on one cluster; a result per input, in order.

    Every input is checked first; the fragments of all of them then run together, and a calculation several
    inputs need (the same atoms, real and ghost, and the same model chemistry) runs once. Progress counts the
    whole set, and says when each input is done.

    An input that cannot be run (refused when checked, or with failed fragments) fails alone: the others run to
    the end, then :class:`~qcmb_dask.errors.InputsFailed` names each failed input and holds every result
    (``.results``, None where an input failed). With ``on_error="partial"`` the list is returned instead: a
    ``PartialResult`` where fragments failed, the error where an input was refused.

    Parameters
    ----------
    inputs
        Inputs as :func:`qcmb_dask.compute` takes them (models, dicts, files).
    cluster
        As for :func:`qcmb_dask.compute`: one cluster for the whole set.
    names
        How messages name each input (default: its file name, or ``input <i>``).
    harnesses, callback, screening
        As for :func:`qcmb_dask.compute` (``callback`` counts the whole set; ``screening`` applies to every input).
    {parameters}

    Examples
    --------
    >>> files = sorted(Path("md-frames").glob("*.xyz"))                                        # doctest: +SKIP
    >>> frames = [qcmb_dask.manybody_input(f, method="hf", basis="6-31g") for f in files]     # doctest: +SKIP
    >>> results = qcmb_dask.compute_many(frames, cluster="slurm", jobs=4)                     # doctest: +SKIP
    >>> [r.properties.cp_corrected_interaction_energy for r in results]                       # doctest: +SKIP
    """
    from qcmb_dask.graph import build_many

    inputs, labels = _listed(inputs, names)
    if "report" in options:
        raise InvalidArgument(
            "compute_many writes no report: run compute on one input with report=, or qcmb-dask report."
        )
    run = Run(cluster, cache, harnesses, Options.from_call(**options), callback=callback)
    plans, refused = _plans(inputs, labels, run.options.max_calculations, run.reporter, screening)
    order = list(plans)
    for position, err in run.admit([plans[index] for index in order], each_alone=True).items():
        refused[order[position]] = err  # the preflight refused this input alone
        run.reporter.say(f"qcmb_dask: input {order[position] + 1} ({labels[order[position]]}) refused: {err}")
        del plans[order[position]]
    if not plans:
        raise InputsFailed([None] * len(inputs), refused, dict(enumerate(labels)))
    order = list(plans)
    run.consider(sum(plan.total_cost() for plan in plans.values()), list(plans.values()))
    run.reporter.say(f"qcmb_dask: {len(plans)} inputs, {run.ncalculations} calculations before the ones they share")

    def input_done(position: int, outcome: Outcome | Exception) -> None:
        index = order[position]
        if isinstance(outcome, Exception):
            state = f"its analysis failed: {outcome}"
        else:
            state = f"{len(outcome.failures)} fragment(s) failed" if outcome.failures else "done"
        run.reporter.say(f"qcmb_dask: input {index + 1} of {len(inputs)} ({labels[index]}): {state}")

    with run.session() as session:
        task_config = session.resources.task_config(retries=run.options.retries)
        workers = session.resources.n_workers
        # the inputs placed one after another on the same workers, each seeing what the ones before it placed
        placements = devices.placements(
            [plans[index] for index in order], session, run.options.processes_per_gpu, run.store_root
        )
        for index, placed in zip(order, placements):
            if placed is not None and placed.summary():
                run.reporter.say(f"qcmb_dask: input {index + 1} ({labels[index]}): {placed.summary()}")
        graphs = build_many(
            [plans[index] for index in order],
            task_config=task_config,
            policy=run.policy,
            ordering=run.options.ordering,
            workers=workers,
            placements=placements if any(p is not None for p in placements) else None,
            task_resources=session.task_resources,
        )
        bsse_types = sorted({bt for plan in plans.values() for bt in plan.bsse_type})
        try:
            outcomes = session.run_many(graphs, run.reporter, bsse_types, input_done)
        finally:
            runlog.remember(run.reporter.log)
        where = session.describe()
    results = _results(run, inputs, labels, plans, order, graphs, outcomes, refused, where)
    run.reporter.say(f"qcmb_dask: {len(inputs)} inputs done in {run.seconds():.1f} s")
    return results


def _listed(inputs: Iterable, names: Sequence[str] | None) -> tuple[list, list[str]]:
    """The inputs as a list and a name for each, or InvalidArgument saying what was expected."""
    if isinstance(inputs, (dict, str, Path)) or hasattr(inputs, "model_dump"):
        raise InvalidArgument(
            f"compute_many takes a list of inputs, got one {type(inputs).__name__}: write compute_many([input]) "
            "(or qcmb_dask.compute(input) for one)."
        )
    try:
        inputs = list(inputs)
    except TypeError:
        raise InvalidArgument(
            f"compute_many takes a list of inputs (models, dicts or files), got {type(inputs).__name__}."
        ) from None
    if not inputs:
        raise InvalidArgument("compute_many got no inputs.")
    if names is not None and len(names) != len(inputs):
        raise InvalidArgument(f"names= has {len(names)} names for {len(inputs)} inputs.")
    return inputs, list(names) if names is not None else [_name(data, index) for index, data in enumerate(inputs)]


def _results(run: Run, inputs, labels, plans, order, graphs, outcomes, refused, where) -> list:
    """A result per input, each with its own record (its timeline: the fragments it shares included), or
    InputsFailed naming each input that failed."""
    records = records_of(run.reporter)
    # a calculation several inputs share ran once, under the label it has in the first of them
    node_label = {key: job.label for key, job in jobs_by_key(graphs).items()}
    results: list[Any] = [None] * len(inputs)
    failures: dict[int, Exception] = dict(refused)
    quiet = Reporter(False)
    for index, graph, outcome in zip(order, graphs, outcomes):
        if isinstance(outcome, Exception):
            failures[index] = outcome
            continue
        record = provenance.run_record(
            run_id=graph.run_id,
            cluster=where,
            stats=outcome.stats,
            store_root=run.store_root,
            began=run.began_epoch,
            log=None,
            level_labels=plans[index].level_labels,
        )
        mine = {node_label[d.key] for d in graph.fragments.values()}
        record["timeline"] = [r for r in records if r["label"] in mine]
        record["input"] = {"index": index, "name": labels[index], "of": len(inputs)}
        try:
            results[index] = run.finish(outcome, record, quiet)
        except FragmentsFailed as err:
            failures[index] = err
    run.reporter.stats(_set_stats(records, [o for o in outcomes if isinstance(o, Outcome)]), run.store_root)
    if failures and run.options.on_error != "partial":
        raise InputsFailed(results, failures, dict(enumerate(labels)))
    for index, error in refused.items():
        results[index] = error
    return results


def _plans(inputs: list, labels: list[str], max_calculations, reporter: Reporter, screening=None) -> tuple[dict, dict]:
    """input index -> its plan, and input index -> why it was refused (each input checked on its own)."""
    plans, refused = {}, {}
    for index, data in enumerate(inputs):
        try:
            if isinstance(data, Exception):  # a file read_input_set could not read
                raise data
            plans[index] = only_whole_plans(make_plan(data, max_calculations, screening), "a run of several inputs")
            derivatives.of_plan(plans[index])
        except (InvalidInput, FileNotFoundError) as err:
            refused[index] = err
            reporter.say(f"qcmb_dask: input {index + 1} ({labels[index]}) refused: {str(err).splitlines()[0]}")
    return plans, refused


def _name(data: Any, index: int) -> str:
    return str(data) if isinstance(data, (str, Path)) else f"input {index + 1}"


def _set_stats(records: list[dict], outcomes: list[Outcome]):
    """The whole set's statistics, each calculation once (one several inputs share ran once): from the
    fragments' records, with the store problems the inputs' analyses saw."""
    from qcmb_dask.worker.analysis import RunStats

    total = RunStats()
    for record in records:
        if record["ok"]:
            total.from_store += bool(record["from_store"])
            total.computed += not record["from_store"]
    for outcome in outcomes:
        total.escalated.update(outcome.stats.escalated)
        total.store_error_count = max(total.store_error_count, outcome.stats.store_error_count)
        total.store_errors = total.store_errors or outcome.stats.store_errors
    return total
