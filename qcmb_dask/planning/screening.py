"""Distance-screened expansions: which k-mers a screened run keeps.

The distance between two fragments is the distance between their closest pair of atoms (Angstrom). With cutoffs
per n-body order (``{2: 9.0, 3: 6.0}``), a k-mer is kept when every pair of its fragments is within the k-body
cutoff and every (k-1)-mer inside it is kept; an order without a cutoff keeps every k-mer whose (k-1)-mers are
kept. So the kept k-mers are closed under taking subsets, and every kept k-mer's many-body increment has the
calculations it needs. Monomers are always kept.

Pure: numpy and the molecule's arrays, no Dask, no QC.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qcmb_dask.errors import InvalidInput

#: Bohr to Angstrom (QCElemental's CODATA 2014 value, as the rest of the stack uses)
BOHR_TO_ANGSTROM = 0.52917721067
#: the treatments a screened expansion is defined for: each k-mer's increment uses only its own subsets
SCREENED_BSSE = ("nocp", "vmfc")


@dataclass(frozen=True)
class Screening:
    """A screened expansion's cutoffs (order -> Angstrom) and what they keep."""

    cutoffs: dict[int, float]
    #: order -> the kept k-mers (1-based sorted fragment tuples), every order up to the expansion's max_nbody
    kept: dict[int, list[tuple[int, ...]]]
    #: order -> the number of k-mers of that order in the full expansion
    full: dict[int, int]
    #: fragment x fragment closest-atom distances (Angstrom)
    distances: np.ndarray = field(repr=False, compare=False)

    def counts(self) -> dict[int, tuple[int, int]]:
        """order -> (kept, in the full expansion)."""
        return {order: (len(self.kept[order]), self.full[order]) for order in sorted(self.kept)}

    def for_analysis(self) -> dict[str, Any]:
        """What the analysis node needs, in plain types (a worker imports no planning code): the summary, the
        kept k-mers and the distances."""
        return {**self.summary(), "kept_kmers": {k: list(v) for k, v in self.kept.items()}, "matrix": self.distances}

    def summary(self) -> dict[str, Any]:
        """For ``extras`` and the plan: cutoffs, and kept/dropped per order (plain JSON types)."""
        return {
            "distance": "closest pair of atoms of two fragments, Angstrom",
            "cutoffs": {str(k): v for k, v in sorted(self.cutoffs.items())},
            "kept": {str(k): kept for k, (kept, _) in self.counts().items()},
            "dropped": {str(k): full - kept for k, (kept, full) in self.counts().items()},
        }


def parse_cutoffs(value: Any) -> dict[int, float] | None:
    """``{2: 9.0, 3: 6.0}``, ``{"2": 9}`` or ``"2=9,3=6"`` -> {order: Angstrom}; None or {} -> None."""

    def cutoff(order: int, given: Any) -> float:
        try:
            distance = float(given)
        except (TypeError, ValueError):
            raise InvalidInput(f"screening: {order}: {given!r} is not an n-body order and a distance.") from None
        if not distance > 0:
            raise InvalidInput(f"screening: the {order}-body cutoff must be a positive distance, not {distance}.")
        return distance

    return per_order(value, "screening", "ANGSTROM", "cutoff in Angstrom", {2: 9.0, 3: 6.0}, cutoff) or None


def per_order(
    value: Any, name: str, unit: str, meaning: str, example: dict[int, float], read: Callable[[int, Any], float]
) -> dict[int, float]:
    """A setting per n-body order of 2 or more: ``{order: value}`` (keys and values may be strings) or
    ``"ORDER=VALUE,..."`` -> {order: read(order, value)}, in order; {} for None, "" or {}. ``name``, ``unit`` (in
    the string form) and ``meaning`` (a value's) name it in the errors, with ``example`` to copy."""
    if value is None or value == "" or value == {}:
        return {}
    pairs = ",".join(f"{k}={v:g}" for k, v in example.items())
    if isinstance(value, str):
        try:
            value = dict(part.split("=", 1) for part in value.replace(" ", "").split(",") if part)
        except ValueError:
            raise InvalidInput(f"{name}={value!r}: expected ORDER={unit} pairs, e.g. '{pairs}'.") from None
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{name}={value!r}: expected {{order: {meaning}}}, e.g. {example}.")
    read_values = {}
    for order, given in value.items():
        try:
            number = int(order)
        except (TypeError, ValueError):
            raise InvalidInput(
                f"{name}: {order!r} is not an n-body order: expected {{order: ...}}, e.g. {example}."
            ) from None
        if number < 2:
            raise InvalidInput(f"{name}: order {number}: only k-mers of 2 fragments or more can be screened.")
        read_values[number] = read(number, given)
    return dict(sorted(read_values.items()))


def fragment_distances(geometry_bohr: np.ndarray, fragments: list) -> np.ndarray:
    """nfrag x nfrag matrix of closest-atom distances (Angstrom); zero on the diagonal."""
    from scipy.spatial.distance import cdist

    xyz = np.asarray(geometry_bohr, dtype=float).reshape(-1, 3) * BOHR_TO_ANGSTROM
    atoms = [np.asarray(f, dtype=int) for f in fragments]
    n = len(atoms)
    result = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            result[i, j] = result[j, i] = cdist(xyz[atoms[i]], xyz[atoms[j]]).min()
    return result


def screen(cutoffs: dict[int, float], distances: np.ndarray, max_nbody: int) -> Screening:
    """The kept k-mers of every order up to ``max_nbody``, by extending kept (k-1)-mers one fragment at a time."""
    from math import comb

    nfrag = distances.shape[0]
    kept: dict[int, list[tuple[int, ...]]] = {1: [(i,) for i in range(1, nfrag + 1)]}
    for order in range(2, max_nbody + 1):
        cutoff = cutoffs.get(order, np.inf)
        near = distances <= cutoff
        previous = set(kept[order - 1])
        grown = []
        for base in kept[order - 1]:
            rows = [i - 1 for i in base]
            # the base's own pairs were kept at the (k-1)-body cutoff: each must meet this order's cutoff too
            if not np.all(near[np.ix_(rows, rows)]):
                continue
            last = base[-1]
            # fragments after the last one that are within the cutoff of every fragment of the base
            candidates = np.flatnonzero(np.all(near[rows, last:], axis=0)) + last + 1
            for new in candidates:
                kmer = (*base, int(new))
                if order == 2 or all(sub in previous for sub in itertools.combinations(kmer, order - 1)):
                    grown.append(kmer)
        kept[order] = grown
    full = {order: comb(nfrag, order) for order in kept}
    return Screening(dict(cutoffs), kept, full, distances)


def check_treatments(bsse_types: list[str], levels: dict, supersystem: bool) -> None:
    """Screening is defined for nocp and vmfc, one model chemistry, no supersystem: refuse the rest clearly."""
    other = [bt for bt in bsse_types if bt not in SCREENED_BSSE]
    if other:
        raise InvalidInput(
            f"screening is defined for nocp and vmfc, where each k-mer's increment uses only calculations of its own "
            f"fragments; bsse_type {other} is not (CP's monomers in the basis of larger clusters mix k-mers). Use "
            "bsse_type ['vmfc'] for a counterpoise-corrected screened expansion, or leave screening out."
        )
    if supersystem:
        raise InvalidInput("screening cannot be combined with a supersystem level: leave one of them out.")
    if len(set(levels.values())) > 1:
        raise InvalidInput(
            "screening works with one model chemistry for every n-body level; this input has several "
            f"({sorted(set(levels.values()))}): run the screened levels as a single-level input."
        )
