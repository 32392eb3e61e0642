"""The nodes of the analysis as a tree: batch sums, merges, each level, the outcome (:mod:`qcmb_dask.worker.sums`).

A batch node reduces a batch's fragment results to partial sums for every analysis (each k-body truncation and
the whole expansion) with its statistics and failures; merge nodes add partials; a level node analyzes the
totals of the levels it reads; the outcome node gives the ManyBodyResult. Every node holds partial sums, never
every fragment result: a run's largest object is a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qcmb_dask.errors import FragmentError
from qcmb_dask.qcmanybody_adapter import NormalizedInput, accept_embedding_charges, qcmb_computer
from qcmb_dask.worker.analysis import (
    LevelIncomplete,
    LevelResult,
    Outcome,
    RunStats,
    summarize,
    without_counterpoise_by_products,
)
from qcmb_dask.worker.fragment import FragmentFailure
from qcmb_dask.worker.sums import WHOLE, Expansion, Sums, analyzed, batch_sums


@dataclass
class Partial:
    """What a subtree of fragments gives: partial sums, where its results came from, what failed."""

    sums: Sums = field(default_factory=Sums)
    stats: RunStats = field(default_factory=RunStats)
    failures: list[FragmentError] = field(default_factory=list)
    #: calculations in this subtree
    count: int = 0


def batch(
    analyses: dict[Any, Expansion], labels: Sequence[str], keep_each: bool, outputs: Sequence, weights=None
) -> Partial:
    """A batch of fragment outputs (``labels``: what this input calls each) reduced to partial sums (``weights``:
    a screened expansion's, for these labels)."""
    stats, failures = summarize(outputs)
    done = [(label, out.properties) for label, out in zip(labels, outputs) if not isinstance(out, FragmentFailure)]
    sums = batch_sums(analyses, [label for label, _ in done], [props for _, props in done], keep_each, weights)
    return Partial(sums, stats, failures, len(outputs))


def merge(*partials: Partial) -> Partial:
    """Partials added: sums, statistics, failures."""
    total = Partial()
    for part in partials:
        merge_into(total, part)
    return total


def merge_into(total: Partial, part: Partial) -> Partial:
    """``part`` added to ``total``, in place."""
    total.sums.merge(part.sums)
    _add_stats(total.stats, part.stats)
    total.failures.extend(part.failures)
    total.count += part.count
    return total


def _add_stats(total: RunStats, part: RunStats) -> None:
    total.computed += part.computed
    total.from_store += part.from_store
    total.escalated.update(part.escalated)
    total.store_error_count += part.store_error_count
    total.store_errors.extend(part.store_errors[: max(0, 3 - len(total.store_errors))])


def level(expansion: Expansion, nbody: int, ncalculations: int, *partials: Partial) -> LevelResult | LevelIncomplete:
    """The expansion truncated at ``nbody``, from the partials of the levels up to it."""
    total = merge(*partials)
    failed = [f.label for f in total.failures if f.nbody <= nbody]
    if failed:
        return LevelIncomplete(nbody, ncalculations, failed)
    result = analyzed(expansion, total.sums, nbody)
    return LevelResult(
        nbody=nbody,
        ncalculations=ncalculations,
        properties=dict(result["results"]),
        energy_body_dict=dict(result["energy_body_dict"]),
        return_energy=result["ret_energy"],
    )


def outcome(
    normalized: NormalizedInput,
    expansion: Expansion,
    order: Sequence[str],
    levels: Sequence,
    *partials: Partial,
    screening: dict | None = None,
) -> Outcome:
    """The ManyBodyResult and the run's statistics from every partial; with failures, no result and every failure.
    ``order``: the labels in QCManyBody's order, where each calculation's properties are kept. ``screening``: a
    screened expansion's (``Screening.for_analysis()``), whose report goes to ``extras["qcmb_dask"]``."""
    total = merge(*partials)
    complete = {lv.nbody: lv for lv in levels if isinstance(lv, LevelResult)}
    if total.failures:
        return Outcome(None, total.failures, total.stats, complete)
    accept_embedding_charges(normalized)
    computer = qcmb_computer(normalized)
    result = analyzed(expansion, total.sums, WHOLE, order)
    result["nbody_number"] = total.count
    report = None
    if screening is not None:
        report = _screening_report(screening, expansion, total.sums)
        if any(report["dropped"].values()):
            without_counterpoise_by_products(result, computer)
    answer = computer.get_results(external_results=result, component_results={})
    if report is not None:
        answer = answer.model_copy(update={"extras": {**(answer.extras or {}), "qcmb_dask": {"screening": report}}})
    answer = answer.convert_v(1) if normalized.result_schema_version == 1 else answer
    return Outcome(answer, [], total.stats, complete)


def _screening_report(screening: dict, expansion: Expansion, sums: Sums) -> dict:
    """The report of a screened expansion (:func:`qcmb_dask.worker.screened.report`) from its shells' sums."""
    from qcmb_dask.worker import screened

    (mc,) = {mc for mc, _ in expansion.nbodies}
    layout = screened.shell_layout(screening)
    shells = {
        (order, shell): sums.total(WHOLE, (mc, "shell", (order, shell)), "energy", 0.0)
        for order, how in layout.items()
        for shell in range(len(how.get("members", [])))
    }
    return screened.report_from_shells(screening, layout, shells)
