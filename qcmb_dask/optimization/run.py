"""``qcmb_dask.optimize``: a geometry optimization whose every energy and gradient is one graph on one cluster.

Orchestration only, as :mod:`qcmb_dask.api`: options -> :class:`~qcmb_dask.execution.run.Run` -> the first plan
(every check before anything is submitted) -> one session for every step -> geomeTRIC, whose engine runs a graph
per point it asks for -> QCElemental's ``OptimizationResult``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from qcmb_dask.diagnostics.displays import LogLines
from qcmb_dask.diagnostics.progress import Reporter
from qcmb_dask.errors import InvalidArgument, OptimizationNotConverged
from qcmb_dask.execution.run import Run
from qcmb_dask.optimization import geometric_driver
from qcmb_dask.optimization.journal import Journal
from qcmb_dask.options import RUN_OPTIONS, Options, document
from qcmb_dask.planning.inputs import InputLike, normalize
from qcmb_dask.planning.plan import make_plan
from qcmb_dask.qcmanybody_adapter import NormalizedInput

if TYPE_CHECKING:
    from qcelemental.models.v2 import OptimizationResult

logger = logging.getLogger("qcmb_dask")

OPTIMIZERS = ("geometric",)
#: what a cluster backend that sizes itself to the work (``cluster=None``) should expect: steps of one plan
EXPECTED_STEPS = 10


@document("cache", *(name for name in RUN_OPTIONS if name not in ("on_error", "report")))
def optimize(
    input: InputLike,
    cluster: Any = None,
    *,
    optimizer: str = "geometric",
    harnesses: Sequence = (),
    cache: Any = None,
    callback: Callable[[int, float, float, dict], None] | None = None,
    screening: Any = None,
    **keywords: Any,
) -> OptimizationResult:
    """Optimize the geometry of a cluster on its many-body energy; QCElemental's ``OptimizationResult`` (v2).

    Every point the optimizer asks for is one many-body gradient: one graph on one cluster, started once for the
    whole optimization. With a result store (the default) every finished point is kept: a point seen before
    (a retried step, a restarted optimization) costs reads, and an optimization started again on the same input
    resumes from its last finished point, along the path an unbroken run takes.

    Parameters
    ----------
    input
        A many-body input as :func:`qcmb_dask.compute` takes it. Its driver becomes ``gradient`` (QCManyBody's
        total energy and gradient: ``return_total_data`` is set), its molecule the starting geometry.
    cluster
        As for :func:`qcmb_dask.compute`; one session serves every step.
    optimizer
        ``"geometric"`` (geomeTRIC, through the route QCEngine's ``geometric`` procedure takes).
    harnesses, screening
        As for :func:`qcmb_dask.compute`.
    callback
        Called after every point as ``callback(point, energy, gradient_rms, record)``: ``point`` counts from 1,
        ``record`` is the point's ``extras["qcmb_dask"]`` (fragments computed and from the store, timings).
    keywords
        The run's keywords below, and geomeTRIC's: ``convergence_set="GAU_TIGHT"``, ``maxiter=100``,
        ``coordsys="tric"``, ``constraints={...}`` (QCSchema's layout), ...
    {parameters}

    Examples
    --------
    >>> mbin = qcmb_dask.manybody_input("trimer.xyz", method="hf", basis="6-31g", max_nbody=2)  # doctest: +SKIP
    >>> result = qcmb_dask.optimize(mbin, convergence_set="GAU_TIGHT")          # doctest: +SKIP
    >>> result.final_molecule.to_string("xyz")                                  # doctest: +SKIP
    >>> [p.return_energy for p in result.trajectory_properties]                 # doctest: +SKIP
    """
    if optimizer.lower() not in OPTIMIZERS:
        raise InvalidArgument(
            f"optimizer={optimizer!r}: qcmb_dask drives {', '.join(OPTIMIZERS)} (pip install geometric). "
            "optking is not supported yet."
        )
    run_options = {name: keywords.pop(name) for name in RUN_OPTIONS if name in keywords}
    if {"on_error", "report"} & set(run_options):
        raise InvalidArgument("optimize takes no on_error= or report=: every point must be whole.")
    geometric_keywords = geometric_driver.check_keywords(keywords)
    start = _gradient_input(normalize(input).model)
    run = Run(cluster, cache, harnesses, Options.from_call(**run_options, on_error="raise"))
    first = make_plan(NormalizedInput(start, 2), run.options.max_calculations, screening)  # every check, nothing runs
    run.admit([first])
    if first.energy_screening is not None:
        from qcmb_dask.execution import adaptive

        adaptive.admit(run, first)
    run.consider(first.total_cost() * EXPECTED_STEPS, [first])
    return _optimized(run, start, first, geometric_keywords, screening, callback)


def _with_frozen_kmers(run: Run, session, moved: NormalizedInput, screening, frozen: dict) -> NormalizedInput:
    """An energy-screened optimization: the k-mers are chosen at its first point (``frozen`` filled) and kept fixed
    after, so that every point's gradient is that of one expansion; the input through the order chosen."""
    from qcmb_dask.execution import adaptive

    if not frozen:
        seed = make_plan(moved, run.options.max_calculations, screening)
        decisions = adaptive.decide(run, session, seed)
        frozen.update(decisions.kept())
        counts = ", ".join(f"{len(kmers)} {order}-mers" for order, kmers in sorted(frozen.items()) if order > 1)
        run.reporter.say(
            f"qcmb_dask: energy screening chose {counts} at the first point; the optimization keeps these k-mers "
            "at every point (a fixed expansion, whose gradient is the derivative of its energy)"
        )
    return adaptive.through_order(moved, frozen)


def _optimized(run: Run, start, first, keywords: dict, screening, callback) -> OptimizationResult:
    """geomeTRIC on one session, every point it asks for one graph (or replayed from the journal)."""
    reporter, store_root = run.reporter, run.store_root
    journal = Journal.in_store(store_root, _token(start, keywords))
    resumed = len(journal.points)
    if resumed:
        reporter.say(f"qcmb_dask: resuming: {resumed} point(s) of this optimization are in the store")
    per_point = "the k-mers energy screening chooses" if first.energy_screening else len(first)
    reporter.say(f"qcmb_dask: optimizing with geomeTRIC, {per_point} calculations per point")
    results: list = []

    #: an energy-screened optimization's k-mers, chosen at its first point and kept for every point after
    frozen: dict = {}

    def evaluate(coordinates: np.ndarray) -> tuple[float, np.ndarray]:
        index = len(results)
        recorded = journal.recall(index, coordinates)
        point = recorded if recorded is not None else coordinates
        moved = NormalizedInput(_moved(start, point), 2)
        if first.energy_screening is not None:
            moved = _with_frozen_kmers(run, session, moved, screening, frozen)
        step_plan = make_plan(moved, run.options.max_calculations, screening, kept=frozen or None)
        step_began = time.time()
        result, _ = run.run_plan(session, step_plan, _point_display(), step_began)
        energy = float(result.properties.return_energy)
        gradient = np.asarray(result.return_result, dtype=float).reshape(-1, 3)
        if recorded is None:
            journal.record(index, point)
        record = result.extras["qcmb_dask"]
        rms = float(np.sqrt(np.mean(gradient**2)))
        reporter.say(
            f"qcmb_dask: point {index + 1}: E = {energy:.10f} Eh, gradient rms {rms:.2e} max "
            f"{np.abs(gradient).max():.2e} Eh/bohr; {record['computed']} computed, {record['from_store']} from "
            f"the store, {time.time() - step_began:.1f} s"
        )
        results.append(result)
        if callback is not None:
            callback(index + 1, energy, rms, record)
        return energy, gradient

    molecule = start.molecule
    with run.session() as session:
        where = session.describe()
        if where.get("where"):
            reporter.say(where["where"])
        try:
            final, log = geometric_driver.optimize(
                molecule.symbols, np.asarray(molecule.geometry), evaluate, keywords, molecule.connectivity
            )
        except geometric_driver.not_converged() as err:
            last = results[-1]
            rms = float(np.sqrt(np.mean(np.asarray(last.return_result) ** 2)))
            energy = last.properties.return_energy
            raise OptimizationNotConverged(len(results), energy, rms, store_root is not None) from err
    seconds = run.seconds()
    reporter.say(f"qcmb_dask: optimization converged in {len(results)} points, {seconds:.1f} s")
    return _optimization_result(start, keywords, results, final, log, where, seconds, resumed=resumed)


def _gradient_input(model):
    """The input with driver gradient and total data, its molecule fixed in space (the optimizer's frame)."""
    data = model.model_dump()
    data["specification"]["driver"] = "gradient"
    data["specification"]["keywords"]["return_total_data"] = True
    return _moved(type(model)(**data), np.asarray(model.molecule.geometry))


def _moved(model, coordinates: np.ndarray):
    """The input at ``coordinates`` (bohr)."""
    from qcelemental.models.v2 import Molecule

    data = model.molecule.model_dump()
    data.update(geometry=np.asarray(coordinates, dtype=float).reshape(-1, 3), fix_com=True, fix_orientation=True)
    return model.model_copy(update={"molecule": Molecule(**data)})


def _point_display() -> Reporter:
    """A point's own run: its lines (where it runs, its levels, its store counts) go to the debug log; the
    optimization says one line per point."""
    return Reporter(displays=[LogLines(level=logging.DEBUG)])


def _token(start, keywords: dict) -> str:
    """Names one optimization: its input (starting geometry included), the optimizer and its keywords but
    ``maxiter`` (a larger one goes on along the same path)."""
    import hashlib

    from qcmb_dask.store import canonical_json

    path = {name: value for name, value in keywords.items() if name != "maxiter"}
    what = {"input": start.model_dump(mode="json"), "optimizer": "geometric", "keywords": path}
    return hashlib.sha256(canonical_json(what).encode()).hexdigest()[:32]


def _optimization_result(start, keywords, results, final, log, where, seconds, resumed):
    """QCElemental's OptimizationResult: every point's ManyBodyResult in order, the final molecule and energy."""
    from qcelemental.models.v2 import OptimizationInput, OptimizationResult, Provenance

    import qcmb_dask

    distances = [np.max(np.abs(np.asarray(r.molecule.geometry) - final)) for r in results]
    last = results[int(np.argmin(distances))]  # geomeTRIC ends on an accepted point, normally the last one
    input_data = OptimizationInput(
        initial_molecule=start.molecule,
        specification={
            "program": "geometric",
            "keywords": keywords,
            "protocols": {"trajectory_results": "all"},
            "specification": start.specification,
        },
    )
    gradient = np.asarray(last.return_result, dtype=float).reshape(-1, 3)
    return OptimizationResult(
        input_data=input_data,
        final_molecule=last.molecule,
        trajectory_results=results,
        trajectory_properties=[r.properties for r in results],
        properties={
            "return_energy": last.properties.return_energy,
            "return_gradient": gradient,
            "optimization_iterations": len(results),
            "nuclear_repulsion_energy": last.molecule.nuclear_repulsion_energy(),
            "final_rms_force": float(np.sqrt(np.mean(gradient**2))),
            "final_max_force": float(np.abs(gradient).max()),
        },
        stdout=log,
        success=True,
        provenance=Provenance(creator="qcmb_dask", version=qcmb_dask.__version__, routine="qcmb_dask.optimize"),
        extras={
            "qcmb_dask": {
                "cluster": where,
                "wall_time_s": round(seconds, 3),
                "points_resumed": resumed,
                "points": [
                    {k: r.extras["qcmb_dask"][k] for k in ("computed", "from_store", "wall_time_s")} for r in results
                ],
            }
        },
    )
