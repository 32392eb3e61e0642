"""What an MBE will run: one :class:`FragmentTask` per unique calculation, pure data, no Dask, no QC.

Fragments come from QCManyBody's ``ManyBodyCore.compute_map`` (cheap index sets); no QCElemental
Molecule is built per fragment here — workers build them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from qcmanybody import ManyBodyCore
from qcmanybody.utils import labeler

from qcmb_dask.errors import InvalidInput
from qcmb_dask.planning import cost, expansion_size, validate
from qcmb_dask.planning.distances import check_distances
from qcmb_dask.planning.inputs import InputLike, normalize
from qcmb_dask.qcmanybody_adapter import (
    NormalizedInput,
    QCMBComputer,
    atomic_specifications,
    iterate_calculations,
    qcmb_computer,
    truncated_core,
    unique_calculations,
)

# Programs that can take QCManyBody's embedding point charges, and how they receive them.
EMBEDDING_PROGRAMS = ("pyscf", "psi4")


@dataclass(frozen=True, slots=True)
class FragmentTask:
    """One QC calculation of the expansion.

    ``real`` and ``basis`` are 1-based fragment indices (QCManyBody's convention); ``nbody`` is the
    lowest n-body level whose truncated result needs this calculation (a VMFC monomer in a dimer
    basis, or the HF monomers of a 2-body HF correction, are level 2), which is how the graph
    groups and orders fragments.
    """

    label: str
    model_chemistry: str
    nbody: int
    real: tuple[int, ...]
    basis: tuple[int, ...]
    program: str
    method: str
    basis_set: str
    driver: str
    #: estimated one-core seconds: orders fragments, longest first; the model's (:mod:`qcmb_dask.planning.cost`) times
    #: the factor measured in earlier runs, where there is one (:mod:`qcmb_dask.planning.cost_history`)
    cost: float = 0.0
    #: the model's own estimate: rough one-core seconds for PySCF on the machine it was fitted on
    model_cost: float = 0.0

    @property
    def ghost(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.basis) - set(self.real)))


@dataclass
class Plan:
    """Everything needed to build the task graph; ``len(plan)`` is the number of QC calculations."""

    input: NormalizedInput
    tasks: list[FragmentTask]
    #: n-body level k -> labels that the k-body-truncated analysis needs (levels where it can be formed).
    level_labels: dict[int, tuple[str, ...]]
    #: model chemistry -> {"program": str, "specification": AtomicSpecification-like dict}
    specifications: dict[str, dict]
    nfragments: int
    max_nbody: int
    bsse_type: list[str]
    driver: str
    embedding_charges: dict[int, list[float]] | None = None
    token: str = field(default="")
    #: model chemistry -> (measured factor over the model, ratios it is the median of, what they measured),
    #: where estimates use one (:func:`qcmb_dask.planning.cost_history.factor_for`)
    cost_factors: dict[str, tuple[float, int, str]] = field(default_factory=dict)
    #: a distance-screened expansion's cutoffs and kept k-mers (:mod:`qcmb_dask.planning.screening`); None: full
    screening: Any = None
    #: an energy-screened expansion's request (:mod:`qcmb_dask.planning.energy_screening`): the plan holds what it
    #: begins with (the monomers) until the run's decisions give the kept k-mers; None: not energy-screened
    energy_screening: Any = None

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[FragmentTask]:
        return iter(self.tasks)

    def total_cost(self) -> float:
        return sum(t.cost for t in self.tasks)

    def counts(self) -> dict[str, dict[int, int]]:
        """model chemistry -> n-body level -> number of calculations."""
        out: dict[str, Counter] = {}
        for task in self.tasks:
            out.setdefault(task.model_chemistry, Counter())[task.nbody] += 1
        return {mc: dict(sorted(c.items())) for mc, c in out.items()}

    def __str__(self) -> str:
        lines = [
            f"Many-body expansion: {self.nfragments} fragments, max_nbody={self.max_nbody}, "
            f"bsse_type={self.bsse_type}, driver={self.driver}: {len(self)} calculations, "
            f"roughly {cost.duration(self.total_cost())} on one core",
        ]
        total = self.total_cost() or 1.0
        share: dict[tuple, float] = {}
        for task in self.tasks:
            share[task.model_chemistry, task.nbody] = share.get((task.model_chemistry, task.nbody), 0.0) + task.cost
        for mc, per_level in self.counts().items():
            spec = self.specifications[mc]
            model = spec["specification"]["model"]
            measured = ""
            if mc in self.cost_factors:
                factor, nratios, what = self.cost_factors[mc]
                measured = f"   (estimates: the model's x {factor:.3g}, from {nratios} earlier {what})"
            keywords = {str(k).lower(): v for k, v in (spec["specification"].get("keywords") or {}).items()}
            device = str(keywords.get("device", "cpu")).lower()
            where = {"gpu": ", on GPU workers", "auto": ", each on a GPU or CPU worker, where it should finish first"}
            lines.append(
                f'  Model chemistry "{mc}" ({spec["program"]} {model["method"]}/{model["basis"]}'
                f"{where.get(device, '')}): {sum(per_level.values())}{measured}"
            )
            for nb, count in per_level.items():
                lines.append(
                    f"      {nb}-body calculations: {count:6}   est. {100 * share[mc, nb] / total:5.1f} % of the work"
                )
        if self.energy_screening is not None:
            lines += _energy_screening_lines(self.energy_screening)
        elif self.screening is not None:
            lines += _screening_lines(self.screening)
        return "\n".join(lines)

    __repr__ = __str__


def _screening_lines(screened) -> list[str]:
    cutoffs = ", ".join(f"{k}-body {v:g} A" for k, v in sorted(screened.cutoffs.items()))
    lines = [f"  Screened by distance (closest atoms of two fragments): {cutoffs}"]
    for order, (kept, full) in screened.counts().items():
        if order > 1:
            saving = f"{100 * (full - kept) / full:5.1f} % dropped" if full else ""
            lines.append(f"      {order}-mers kept: {kept:9,} of {full:,}   {saving}")
    return lines


def _energy_screening_lines(request) -> list[str]:
    thresholds = ", ".join(f"{k}-body {v:g} Eh" for k, v in sorted(request.thresholds.items())) or "none"
    order = f"; the order chosen by the results (tolerance {request.tolerance:g} Eh)" if request.auto else ""
    lines = [
        f"  Screened by energy (measure {request.measure}): thresholds {thresholds}{order}. The monomers above run "
        "first; every larger k-mer is chosen from the results as they arrive."
    ]
    if request.distance:
        cutoffs = ", ".join(f"{k}-body {v:g} A" for k, v in sorted(request.distance.items()))
        lines.append(f"  Candidates limited by distance (closest atoms of two fragments): {cutoffs}")
    return lines


def only_whole_plans(plan: Plan, where: str) -> Plan:
    """``plan``, refused where ``where`` runs plans as they are and an energy-screened one is its monomers alone
    until a run decides the rest."""
    if plan.energy_screening is not None:
        raise InvalidInput(
            f"energy screening chooses its k-mers while it runs, which {where} does not do: run the input with "
            "qcmb_dask.compute (or qcmb-dask run), or screen by distance here."
        )
    return plan


def make_plan(data: InputLike, max_calculations: int | None = None, screening=None, kept: dict | None = None) -> Plan:
    """Plan an MBE: validate the input once, enumerate its unique calculations and their n-body levels.

    ``screening``: n-body order -> cutoff (Angstrom), or the input's ``specification.extras["qcmb_dask"]
    ["screening"]``: only the k-mers :mod:`qcmb_dask.planning.screening` keeps are planned. With energy
    thresholds (:mod:`qcmb_dask.planning.energy_screening`), the monomers are planned, and ``kept`` (order -> the
    k-mers an energy-screened run kept, closed under subsets) plans those.

    Every problem QCManyBody, QCElemental or qcmb_dask finds in the input is an
    :class:`~qcmb_dask.errors.InvalidInput`; programs are checked to be known to QCEngine and able to run
    the method and driver (whether they are installed is ``compute``'s check, where they run). An expansion
    of more than ``max_calculations`` calculations (default
    :data:`~qcmb_dask.expansion_size.DEFAULT_MAX_CALCULATIONS`) is refused before it is enumerated.
    """
    with validate.input_errors():
        normalized = data if isinstance(data, NormalizedInput) else normalize(data)
        validate.check_fragmentation(normalized.model)
        validate.check_levels(normalized.model)
        validate.check_model_fields(normalized.model)
        molecule = normalized.model.molecule
        if not _our_extras(normalized).get("short_bonds"):
            check_distances(molecule.symbols, molecule.geometry)
        computer = qcmb_computer(normalized)
        given = atomic_specifications(computer)
        validate.check_levels_are_specified(computer.levels, given)
        # QCManyBody runs only the model chemistries the levels name; the others are neither checked nor run.
        specifications = {mc: spec for mc, spec in given.items() if mc in set(computer.levels.values())}
        validate.check_duplicate_model_chemistries(specifications)
        _check_embedding_programs(computer, specifications)
    core: ManyBodyCore = computer.qcmb_core
    driver = str(computer.driver.value)
    cost_of = _cost_estimator(computer.molecule, specifications, driver)
    cutoffs, request = screening_request(normalized, screening)
    if request is not None or cutoffs is not None:
        return _screened_plan(normalized, computer, specifications, cost_of, cutoffs, max_calculations, request, kept)
    _check_size(core, cost_of, max_calculations)

    level_labels = _truncated_level_labels(computer)
    first_level: dict[str, int] = {}
    for k, labels in level_labels.items():
        for label in labels:
            first_level.setdefault(label, k)
    # Calculations no truncation uses (supersystem, supersystem_ie_only) count by their real fragments. A task's
    # label is the string object its levels hold (one string, not one per level, in a plan of a million).
    same = {label: label for label in first_level}
    tasks = [
        _task(same.get(label, label), mc, first_level.get(label, len(real)), real, basis, specifications[mc], driver,
              cost_of)
        for mc, label, real, basis in iterate_calculations(core)
    ]  # fmt: skip
    del same
    plan = Plan(
        input=normalized,
        tasks=tasks,
        level_labels=level_labels,
        specifications=specifications,
        nfragments=core.nfragments,
        max_nbody=core.max_nbody,
        bsse_type=[bt.value for bt in core.bsse_type],
        driver=driver,
        embedding_charges=computer.embedding_charges,
        token=hashlib.sha256(normalized.model.model_dump_json().encode()).hexdigest()[:12],
    )
    validate.check_programs(validate.plan_requests(plan), installed=False)
    return plan


def _task(label: str, mc: str, nbody: int, real, basis, spec: dict, driver: str, cost_of) -> FragmentTask:
    model = spec["specification"]["model"]
    estimate = cost_of(mc, basis)
    return FragmentTask(
        label=label,
        model_chemistry=mc,
        nbody=nbody,
        real=real,
        basis=basis,
        program=spec["program"],
        method=model["method"],
        basis_set=model["basis"],
        driver=driver,
        cost=estimate,
        model_cost=estimate,
    )


def _our_extras(normalized: NormalizedInput) -> dict:
    """``specification.extras["qcmb_dask"]``: what an input tells qcmb_dask beyond QCManyBody's fields."""
    extras = (normalized.model.specification.extras or {}).get("qcmb_dask")
    return extras if isinstance(extras, dict) else {}


def screening_of(normalized: NormalizedInput, given) -> dict[int, float] | None:
    """The cutoffs of a screened run: the call's, else the input's ``specification.extras["qcmb_dask"]``."""
    return screening_request(normalized, given)[0]


def screening_request(normalized: NormalizedInput, given):
    """(distance cutoffs or None, energy request or None): the call's ``screening``, else the input's
    ``specification.extras["qcmb_dask"]["screening"]``."""
    from qcmb_dask.planning.energy_screening import parse
    from qcmb_dask.planning.screening import parse_cutoffs

    if given is None:
        extras = normalized.model.specification.extras or {}
        given = (extras.get("qcmb_dask") or {}).get("screening")
    cutoffs, request = parse(given)
    cutoffs = parse_cutoffs(cutoffs)
    if request is not None and cutoffs:
        request = dataclasses.replace(request, distance=cutoffs)
    return cutoffs, request


def unit_calculations(kmer: tuple[int, ...], bsse_types, mc: str) -> dict[str, tuple[tuple, tuple]]:
    """label -> (real, basis): the calculations a k-mer's increment needs: nocp its own, vmfc every sub-cluster
    of it in its basis."""
    calculations = {}
    if "nocp" in bsse_types:
        calculations[labeler(mc, kmer, kmer)] = (kmer, kmer)
    if "vmfc" in bsse_types:
        for size in range(1, len(kmer) + 1):
            for real in itertools.combinations(kmer, size):
                calculations.setdefault(labeler(mc, real, kmer), (real, kmer))
    return calculations


def task_maker(plan: Plan, specifications: dict[str, dict], driver: str):
    """((label -> (real, basis)), model chemistry) -> FragmentTasks, for calculations a run chooses while it goes
    on (an energy-screened run's k-mers); ``specifications``: model chemistry -> {"program", "specification"}, of
    ``plan`` or beside it (a cheap method)."""
    cost_of = _cost_estimator(plan.input.model.molecule, specifications, driver)

    def tasks(calculations: dict[str, tuple[tuple[int, ...], tuple[int, ...]]], mc: str) -> list[FragmentTask]:
        return [
            _task(label, mc, len(basis), real, basis, specifications[mc], driver, cost_of)
            for label, (real, basis) in calculations.items()
        ]

    return tasks


def _screened_plan(
    normalized, computer, specifications, cost_of, cutoffs, max_calculations, request=None, kept=None
) -> Plan:
    """The plan of a screened expansion, from the kept k-mers alone (the full expansion is never enumerated):
    nocp needs each kept k-mer in its own basis, vmfc every sub-cluster of each kept k-mer in its basis."""
    from qcmb_dask.planning import energy_screening
    from qcmb_dask.planning import screening as sc

    core: ManyBodyCore = computer.qcmb_core
    # what the input asks for: QCManyBody's core adds by-products (vmfc's calculations give cp and nocp too)
    bsse_types = [bt.value for bt in computer.bsse_type]
    sc.check_treatments(bsse_types, core.levels, core.has_supersystem)
    driver = str(computer.driver.value)
    if request is not None and kept is None:  # once, at the start: the kept k-mers may end below max_nbody
        energy_screening.check(request, core.max_nbody, bsse_types, driver)
    molecule = computer.molecule
    distances = sc.fragment_distances(molecule.geometry, molecule.fragments)
    if request is None:
        screened = sc.screen(cutoffs, distances, core.max_nbody)
    else:  # the monomers until the run has decided; then what it kept (the distance cutoffs limit its candidates)
        kept = kept or {1: [(i,) for i in range(1, core.nfragments + 1)]}
        kept = {order: [tuple(k) for k in kept.get(order, [])] for order in range(1, core.max_nbody + 1)}
        # no cutoffs here: the distance report's fit of dropped energy is for k-mers dropped by distance alone
        screened = sc.Screening({}, kept, {k: math.comb(core.nfragments, k) for k in kept}, distances)
    mc = next(iter(set(core.levels.values())))
    calculations: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
    for order in sorted(screened.kept):
        for kmer in screened.kept[order]:
            for label, calculation in unit_calculations(kmer, bsse_types, mc).items():
                calculations.setdefault(label, calculation)
    if max_calculations is not None and len(calculations) > max_calculations:
        raise InvalidInput(
            f"the screened expansion keeps {len(calculations):,} calculations, more than qcmb_dask.max-calculations "
            f"({max_calculations:,}): tighten the cutoffs, or raise the setting if you mean it."
        )
    spec = specifications[mc]
    tasks = [
        _task(label, mc, len(basis), real, basis, spec, driver, cost_of)
        for label, (real, basis) in calculations.items()
    ]
    level_labels = {k: tuple(t.label for t in tasks if t.nbody <= k) for k in range(1, core.max_nbody + 1)}
    plan = Plan(
        input=normalized,
        tasks=tasks,
        level_labels=level_labels,
        specifications={mc: spec},
        nfragments=core.nfragments,
        max_nbody=core.max_nbody,
        bsse_type=bsse_types,
        driver=driver,
        embedding_charges=computer.embedding_charges,
        token=hashlib.sha256(
            (
                normalized.model.model_dump_json() + repr(cutoffs) + ("" if request is None else repr((request, kept)))
            ).encode()
        ).hexdigest()[:12],
        screening=screened,
        energy_screening=request,
    )
    validate.check_programs(validate.plan_requests(plan), installed=False)
    return plan


def _check_size(core: ManyBodyCore, cost_of, max_calculations: int | None) -> None:
    """Count before enumerating: refuse an expansion too large to plan, with its size and a rough time."""
    counts = expansion_size.count(
        core.nfragments,
        [bt.value for bt in core.bsse_type],
        core.nbodies_per_mc_level,
        max_nbody=core.max_nbody,
        return_total_data=core.return_total_data,
        supersystem_ie_only=core.supersystem_ie_only,
    )

    def seconds_per(mc: str, order: int) -> float:  # a typical order-mer: the first `order` fragments
        return cost_of(mc, tuple(range(1, min(order, core.nfragments) + 1)))

    expansion_size.check(counts, max_calculations, seconds_per)


def _cost_estimator(molecule, specifications: dict[str, dict], driver: str):
    """(model chemistry, basis fragments) -> estimated seconds, from per-fragment basis-function counts.

    Cached: every counterpoise calculation of a model chemistry shares one basis, costed once.
    """
    fragment_symbols = [[molecule.symbols[i] for i in atoms] for atoms in molecule.fragments]
    fragment_atoms = {i + 1: len(atoms) for i, atoms in enumerate(molecule.fragments)}
    nbf_per_fragment = {
        mc: cost.fragment_basis_functions(spec["specification"]["model"]["basis"], fragment_symbols)
        for mc, spec in specifications.items()
    }
    costs: dict[tuple, float] = {}

    def cost_of(mc: str, basis: tuple[int, ...]) -> float:
        if (mc, basis) not in costs:
            nbf = sum(nbf_per_fragment[mc][i] for i in basis)
            natoms = sum(fragment_atoms[i] for i in basis)
            method = specifications[mc]["specification"]["model"]["method"]
            costs[mc, basis] = cost.estimate(nbf, natoms, method, driver)
        return costs[mc, basis]

    return cost_of


def _truncated_level_labels(computer: QCMBComputer) -> dict[int, tuple[str, ...]]:
    """For each k, the labels of the k-body-truncated analysis, when the full plan contains all of them.

    With ``supersystem_ie_only`` the intermediate levels are never computed, so those truncations
    are skipped rather than adding calculations the user did not ask for.
    """
    full = set(unique_calculations(computer.qcmb_core))
    levels = {}
    for k in range(1, computer.qcmb_core.max_nbody + 1):
        calcs = list(unique_calculations(truncated_core(computer, k)))
        if set(calcs) <= full:
            levels[k] = tuple(labeler(*calc) for calc in calcs)
    same: dict[str, str] = {}  # the levels share each label's string: level k holds the labels of k - 1
    return {k: tuple(same.setdefault(label, label) for label in labels) for k, labels in levels.items()}


def _check_embedding_programs(computer: QCMBComputer, specifications: dict[str, dict]) -> None:
    if not computer.embedding_charges:
        return
    for mc, spec in specifications.items():
        if spec["program"].lower() not in EMBEDDING_PROGRAMS:
            raise ValueError(
                f"Embedding charges need a program that accepts point charges ({', '.join(EMBEDDING_PROGRAMS)}); "
                f"model chemistry {mc!r} uses {spec['program']!r}."
            )
