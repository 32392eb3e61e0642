"""``compute_many``: many inputs (a scan, an MD trajectory, a benchmark set) as one graph on one cluster.

Orchestration only, as :mod:`qcmb_dask.api`: options -> backend -> plans -> one session -> a result per input.
A calculation two inputs share (the same monomer in every frame of a scan) is one node of the graph
(:func:`qcmb_dask.graph.build_many`), and the result store shares it with later runs as usual.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from qcmb_dask import preflight, store
from qcmb_dask.api import Result, _finish, open_run
from qcmb_dask.clusters.session import jobs_by_key
from qcmb_dask.diagnostics import provenance, runlog
from qcmb_dask.diagnostics.progress import ProgressArg, Reporter
from qcmb_dask.errors import FragmentsFailed, InputsFailed, InvalidArgument, InvalidInput
from qcmb_dask.interrupts import as_interrupts
from qcmb_dask.options import Options, document
from qcmb_dask.planning import derivatives, validate
from qcmb_dask.planning.plan import make_plan
from qcmb_dask.worker.analysis import Outcome
from qcmb_dask.worker.fragment import RunPolicy

logger = logging.getLogger("qcmb_dask")


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
    "ordering",
)
def compute_many(
    inputs: Iterable,
    cluster: Any = None,
    *,
    names: Sequence[str] | None = None,
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
    ordering: str | None = None,
    screening: Any = None,
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
    labels = list(names) if names is not None else [_name(data, index) for index, data in enumerate(inputs)]
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
        ordering=ordering,
    )
    store_root, backend = open_run(cluster, cache, harnesses)
    reporter = Reporter(options.progress, callback=callback)
    plans, refused = _plans(inputs, labels, options.max_calculations, reporter, screening)
    if not plans:
        raise InputsFailed([None] * len(inputs), refused, dict(enumerate(labels)))
    ncalculations = sum(len(plan) for plan in plans.values())
    backend.check(options, ncalculations)
    if backend.programs_run_here:
        for plan in plans.values():
            validate.check_programs(validate.plan_requests(plan), installed=True)
    if store_root is not None:
        store.prepare(store_root)
    if backend.programs_run_here:
        for index in list(plans):
            try:
                preflight.check(plans[index], store_root, options.on_error, announce=logger.info)
            except InvalidInput as err:  # this input fails alone
                refused[index] = err
                del plans[index]
                reporter.say(f"qcmb_dask: input {index + 1} ({labels[index]}) refused: {str(err).splitlines()[0]}")
        if not plans:
            raise InputsFailed([None] * len(inputs), refused, dict(enumerate(labels)))
    programs_used = sorted({t.program.lower() for plan in plans.values() for t in plan})
    backend.consider(sum(plan.total_cost() for plan in plans.values()), programs_used, store_root)
    policy = RunPolicy(str(store_root) if store_root else None, options.timeout_per_task, options.escalate)
    reporter.say(f"qcmb_dask: {len(plans)} inputs, {ncalculations} calculations before the ones they share")
    backend.announce = reporter.say
    order = list(plans)

    def input_done(position: int, outcome: Outcome | Exception) -> None:
        index = order[position]
        if isinstance(outcome, Exception):
            state = f"its analysis failed: {outcome}"
        else:
            state = f"{len(outcome.failures)} fragment(s) failed" if outcome.failures else "done"
        reporter.say(f"qcmb_dask: input {index + 1} of {len(inputs)} ({labels[index]}): {state}")

    with as_interrupts(), backend.session(options, harnesses, ncalculations) as session:
        task_config = session.resources.task_config(retries=options.retries)
        graphs = build_many(
            [plans[index] for index in order],
            task_config=task_config,
            policy=policy,
            ordering=options.ordering,
            workers=session.resources.n_workers,
        )
        bsse_types = sorted({bt for plan in plans.values() for bt in plan.bsse_type})
        try:
            outcomes = session.run_many(graphs, reporter, bsse_types, input_done)
        finally:
            runlog.remember(reporter.log)
        where = session.describe()
    records = list(reporter.log.records) if reporter.log is not None else []
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
            store_root=store_root,
            began=began_epoch,
            log=None,
            level_labels=plans[index].level_labels,
        )
        mine = {node_label[d.key] for d in graph.fragments.values()}
        record["timeline"] = [r for r in records if r["label"] in mine]
        record["input"] = {"index": index, "name": labels[index], "of": len(inputs)}
        try:
            results[index] = _finish(outcome, options.on_error, store_root, quiet, record)
        except FragmentsFailed as err:
            failures[index] = err
    reporter.stats(_set_stats(records, [o for o in outcomes if isinstance(o, Outcome)]), store_root)
    if failures and options.on_error != "partial":
        raise InputsFailed(results, failures, dict(enumerate(labels)))
    for index, error in refused.items():
        results[index] = error
    reporter.say(f"qcmb_dask: {len(inputs)} inputs done in {time.perf_counter() - began:.1f} s")
    return results


def _plans(inputs: list, labels: list[str], max_calculations, reporter: Reporter, screening=None) -> tuple[dict, dict]:
    """input index -> its plan, and input index -> why it was refused (each input checked on its own)."""
    plans, refused = {}, {}
    for index, data in enumerate(inputs):
        try:
            if isinstance(data, Exception):  # a file read_input_set could not read
                raise data
            plans[index] = make_plan(data, max_calculations, screening)
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
