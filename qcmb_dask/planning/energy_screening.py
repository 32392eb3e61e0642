"""Energy-screened expansions: which k-mers to compute, decided from many-body increments as they arrive, with
no level barrier.

A k-mer (a sorted tuple of 1-based fragments) becomes a candidate when every (k-1)-mer inside it was kept and
its increment is known. Then, by the measure:

- ``max``, ``sum`` or ``min`` of the absolute increments of its (k-1)-mers: decided at once, computed when the
  measure reaches the order's threshold (Eh), dropped otherwise;
- ``own`` (a cheap method's run: :data:`CHEAP_METHODS`): computed, then kept when its own increment reaches the
  threshold, dropped otherwise.

An order without a threshold keeps every candidate. The kept k-mers are so closed under taking subsets, as a
distance-screened expansion's are, and each kept k-mer's increment has every calculation it needs.

Pure: no Dask, no QC.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qcmb_dask.errors import InvalidInput

#: name -> the measure of a candidate, from the absolute increments of its (k-1)-mers
MEASURES: dict[str, Callable[[list[float]], float]] = {"max": max, "sum": sum, "min": min}
#: the measure that decides a k-mer by its own increment, computed first (a cheap method's run)
OWN = "own"
#: a cheap method's name -> (QCEngine program, method): its increments decide what the expensive method runs
CHEAP_METHODS = {"gfn2-xtb": ("tblite", "gfn2-xtb"), "gfn1-xtb": ("tblite", "gfn1-xtb")}
#: the measure used where none is given: the steadiest measured (benchmarks/README.md, "Energy-screened expansions")
DEFAULT_MEASURE = "max"
#: what ``screening=`` may hold besides distance cutoffs
KEYS = ("distance", "energy", "measure", "max_nbody", "tolerance")
#: the drivers a screening measure is defined for: each k-mer's energy is its increment's first part
SCREENED_DRIVERS = ("energy", "gradient")


@dataclass(frozen=True)
class EnergyRequest:
    """What ``screening={"energy": ...}`` asks: thresholds per order (Eh), the measure, and an order chosen by
    the results (``max_nbody: "auto"``, stopping once the next level's estimate is below ``tolerance``)."""

    thresholds: dict[int, float]
    measure: str = DEFAULT_MEASURE
    auto: bool = False
    tolerance: float | None = None
    #: distance cutoffs (order -> Angstrom) that limit the candidates, if given beside
    distance: dict[int, float] | None = None

    @property
    def cheap(self) -> tuple[str, str] | None:
        """(program, method) of a cheap method whose increments decide, or None."""
        return CHEAP_METHODS.get(self.measure)

    def summary(self) -> dict[str, Any]:
        return {
            "thresholds": {str(k): v for k, v in sorted(self.thresholds.items())},
            "measure": self.measure,
            **({"max_nbody": "auto", "tolerance": self.tolerance} if self.auto else {}),
            **({"distance": {str(k): v for k, v in sorted(self.distance.items())}} if self.distance else {}),
        }


def parse(value: Any) -> tuple[Any, EnergyRequest | None]:
    """``screening=`` -> (its distance cutoffs as given, or None; its energy request, or None). A mapping with
    none of :data:`KEYS` is distance cutoffs alone (``{2: 12, 3: 8}``), as is a string (``"2=12,3=8"``)."""
    if not isinstance(value, Mapping) or not any(str(key) in KEYS for key in value):
        return value, None
    unknown = sorted(str(key) for key in value if str(key) not in KEYS)
    if unknown:
        raise InvalidInput(
            f"screening: {unknown} are not screening settings; expected some of {list(KEYS)}, e.g. "
            "{'distance': {2: 12, 3: 8}, 'energy': {3: 1e-5, 4: 1e-6}, 'measure': 'max'}."
        )
    auto = value.get("max_nbody")
    if auto not in (None, "auto"):
        raise InvalidInput(f"screening: max_nbody={auto!r}: only 'auto' goes here (a number is the input's own).")
    tolerance = value.get("tolerance")
    if auto and tolerance is None:
        raise InvalidInput("screening: max_nbody='auto' needs a tolerance (Eh): the next level's estimate it stops at.")
    if tolerance is not None:
        if not auto:
            raise InvalidInput("screening: a tolerance is what max_nbody='auto' stops at: give max_nbody='auto' too.")
        tolerance = _energy("tolerance", tolerance, positive=True)
    thresholds = parse_thresholds(value.get("energy"))
    measure = str(value.get("measure", DEFAULT_MEASURE)).lower()
    if measure not in (*MEASURES, *CHEAP_METHODS):
        raise InvalidInput(
            f"screening: measure={value.get('measure')!r}: expected one of {sorted(MEASURES)} (of a k-mer's (k-1)-mer "
            f"increments) or a cheap method, {sorted(CHEAP_METHODS)} (its own increment, computed first)."
        )
    if not thresholds and not auto:
        raise InvalidInput("screening: give energy thresholds ({'energy': {3: 1e-5}}) or max_nbody='auto'.")
    return value.get("distance"), EnergyRequest(thresholds, measure, bool(auto), tolerance)


def parse_thresholds(value: Any) -> dict[int, float]:
    """``{3: 1e-5, 4: 1e-6}``, ``{"3": "1e-5"}`` or ``"3=1e-5,4=1e-6"`` -> {order: Eh}."""
    from qcmb_dask.planning.screening import per_order

    return per_order(
        value,
        "screening: energy",
        "EH",
        "threshold in Eh",
        {3: 1e-5, 4: 1e-6},
        lambda order, given: _energy(f"the {order}-body energy threshold", given),
    )


def _energy(what: str, value: Any, positive: bool = False) -> float:
    try:
        number = None if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not math.isfinite(number) or number < 0 or (positive and number == 0):
        kind = "a positive number" if positive else "a number of at least 0"
        raise InvalidInput(f"screening: {what} must be {kind} (Eh), not {value!r}.")
    return number


def check(request: EnergyRequest, max_nbody: int, bsse_types: list[str], driver: str) -> None:
    """What the input must be for the request (the treatments are checked as for distance screening)."""
    above = [order for order in request.thresholds if order > max_nbody]
    if above:
        raise InvalidInput(
            f"screening: energy thresholds for orders {above} above the input's max_nbody ({max_nbody}): leave them "
            "out, or raise max_nbody."
        )
    if driver not in SCREENED_DRIVERS:
        raise InvalidInput(
            f"screening: energy screening decides from energies, for driver energy or gradient, not {driver}: screen "
            "by distance for a Hessian, or leave energy screening out."
        )
    if 2 in request.thresholds and request.cheap is None:
        raise InvalidInput(
            "screening: a 2-body energy threshold needs a measure a dimer has before it is computed: a cheap method "
            f"({sorted(CHEAP_METHODS)}); a dimer's monomer 'increments' are whole energies. Screen dimers by "
            "distance ({'distance': {2: 12}}) instead."
        )


@dataclass
class EnergyScreen:
    """Decisions of one energy-screened expansion, fed the increments of the k-mers it computes, in any order that
    gives a k-mer's after those of its subsets (the order a task graph finishes them in).

    ``candidate``: where the k-mers are limited beforehand (distance cutoffs), whether a k-mer is one.
    ``ceiling``: candidates above this order wait (:meth:`raise_ceiling`); None: ``max_nbody``.
    """

    nfragments: int
    max_nbody: int
    thresholds: Mapping[int, float]
    measure: str = DEFAULT_MEASURE
    candidate: Callable[[tuple[int, ...]], bool] | None = None
    ceiling: int | None = None
    #: kept and computed k-mer -> its increment (Eh)
    increments: dict[tuple[int, ...], float] = field(default_factory=dict)
    #: order -> the kept k-mers, in the order they were decided
    kept: dict[int, list[tuple[int, ...]]] = field(default_factory=dict)
    #: dropped k-mer -> the measure that dropped it
    dropped: dict[tuple[int, ...], float] = field(default_factory=dict)
    #: order -> candidates that wait for the ceiling to rise
    parked: dict[int, list[tuple[int, ...]]] = field(default_factory=dict)
    #: candidate k-mer -> its (k-1)-mers not yet computed
    _waiting: dict[tuple[int, ...], int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.measure not in (*MEASURES, OWN):
            raise ValueError(f"measure={self.measure!r}: expected one of {sorted(MEASURES)} or {OWN!r}")
        self.kept[1] = [(i,) for i in range(1, self.nfragments + 1)]
        for order in range(2, self.max_nbody + 1):
            self.kept.setdefault(order, [])

    def first(self) -> list[tuple[int, ...]]:
        """The k-mers to compute before any result: every monomer."""
        return list(self.kept[1])

    def nocp_increment(self, kmer: tuple[int, ...], energy: float) -> float:
        """E(S) - the increments of S's proper subsets (each kept, so each known)."""
        below = sum(self.increments[sub] for size in range(1, len(kmer)) for sub in itertools.combinations(kmer, size))
        return energy - below

    def computed(self, kmer: tuple[int, ...], increment: float) -> list[tuple[int, ...]]:
        """A computed k-mer's increment: recorded (``own``: kept or dropped by it), and the (k+1)-mers it was the
        last k-mer of, decided; returns those to compute."""
        kmer = tuple(sorted(kmer))
        k = len(kmer)
        if kmer in self.increments or kmer in self.dropped:
            return []  # a calculation reported twice (its worker lost after it ended) counts once
        if self.measure == OWN and k > 1:
            threshold = self.thresholds.get(k)
            if threshold is not None and abs(increment) < threshold:
                self.dropped[kmer] = abs(increment)
                return []
            self.kept[k].append(kmer)
        self.increments[kmer] = increment
        if k >= self.max_nbody:
            return []
        ready = []
        for fragment in range(1, self.nfragments + 1):
            if fragment in kmer:
                continue
            grown = tuple(sorted((*kmer, fragment)))
            if self.candidate is not None and not self.candidate(grown):
                continue
            left = self._waiting.get(grown, k + 1) - 1
            if left:
                self._waiting[grown] = left
                continue
            self._waiting.pop(grown, None)
            ready.extend(self._ready(grown))
        return ready

    def _ready(self, kmer: tuple[int, ...]) -> list[tuple[int, ...]]:
        order = len(kmer)
        if self.ceiling is not None and order > self.ceiling:
            self.parked.setdefault(order, []).append(kmer)
            return []
        if self.measure == OWN:
            return [kmer]  # computed first; kept or dropped by its own increment
        threshold = self.thresholds.get(order)
        if threshold is None:
            self.kept[order].append(kmer)
            return [kmer]
        value = self.measure_of(kmer)
        if value >= threshold:
            self.kept[order].append(kmer)
            return [kmer]
        self.dropped[kmer] = value
        return []

    def measure_of(self, kmer: tuple[int, ...]) -> float:
        """The measure over the absolute increments of ``kmer``'s (k-1)-mers."""
        parts = [abs(self.increments[sub]) for sub in itertools.combinations(kmer, len(kmer) - 1)]
        return MEASURES[self.measure](parts)

    def raise_ceiling(self, order: int) -> list[tuple[int, ...]]:
        """Let candidates through ``order`` go on: decided now; returns those to compute."""
        self.ceiling = order
        ready = []
        for parked_order in sorted(k for k in self.parked if k <= order):
            for kmer in self.parked.pop(parked_order):
                ready.extend(self._ready(kmer))
        return ready

    def waiting_for(self, order: int) -> int:
        """Candidates of ``order`` waiting at the ceiling."""
        return len(self.parked.get(order, ()))

    def level_total(self, order: int) -> float:
        """The sum of the kept ``order``-mers' increments."""
        return sum(self.increments[kmer] for kmer in self.kept.get(order, ()) if kmer in self.increments)

    def total(self, order: int | None = None) -> float:
        """The screened expansion's energy through ``order`` (default: every order kept): the sum of the kept
        k-mers' increments."""
        top = self.max_nbody if order is None else order
        return sum(increment for kmer, increment in self.increments.items() if len(kmer) <= top)

    def unfinished(self) -> int:
        """Candidates still waiting for a (k-1)-mer: zero once every kept k-mer's energy has arrived (those left
        then had a (k-1)-mer dropped, and are dropped with it)."""
        return len(self._waiting)


def next_level_estimate(totals: Mapping[int, float], order: int) -> float | None:
    """The size of level ``order + 1``'s total, from the trend of the levels so far: ``|T_k|^2 / |T_(k-1)|``
    (a geometric decay with the last ratio of levels). None below 3-body (a monomer 'level' is a whole energy,
    no trend) or where the last level's total is zero."""
    if order < 3 or not totals.get(order - 1):
        return None
    return totals[order] ** 2 / abs(totals[order - 1])


def run_through(screen: EnergyScreen, energy_of: Callable[[tuple[int, ...]], float]) -> EnergyScreen:
    """Feed ``screen`` every (nocp) energy it asks for, breadth first (what a run does, in some order): for tests
    and for measuring thresholds against a full expansion's energies."""
    queue: list[tuple[int, ...]] = screen.first()
    while queue:
        kmer = queue.pop(0)
        queue.extend(screen.computed(kmer, screen.nocp_increment(kmer, energy_of(kmer))))
    return screen


def full_increments(nfragments: int, max_nbody: int, energy_of: Callable[[tuple[int, ...]], float]) -> dict:
    """Every k-mer's nocp increment up to ``max_nbody`` (the unscreened reference)."""
    increments: dict[tuple[int, ...], float] = {}
    for order in range(1, max_nbody + 1):
        for kmer in itertools.combinations(range(1, nfragments + 1), order):
            below = sum(increments[sub] for size in range(1, order) for sub in itertools.combinations(kmer, size))
            increments[kmer] = energy_of(kmer) - below
    return increments
