"""Charges and multiplicities qcmb_dask fills in are exactly QCElemental's: any difference fails.

QCElemental's own ``validate_and_fill_chgmult`` is the reference, on generated problems small enough for its
exponential search; then whole molecules through ``normalize`` against ``Molecule(**same dict)``; then the
input that once gave a silently different interaction energy, run against QCManyBody.
"""

import random
import time
import warnings

import numpy as np
import pytest
from qcelemental.exceptions import ValidationError
from qcelemental.models import Molecule
from qcelemental.molparse.chgmult import validate_and_fill_chgmult

from qcmb_dask.errors import InputWarning, InvalidInput
from qcmb_dask.planning import chgmult
from qcmb_dask.planning.inputs import normalize

from .conftest import BOHR_PER_ANGSTROM, assert_same_result, mbe_input, qcmanybody_reference

#: neutral electron counts of atoms (0: a ghost atom), weighted towards what clusters are made of
ATOMS = [0, 1, 1, 1, 2, 3, 6, 7, 8, 8, 9, 10, 11, 17]


def random_problem(rng: random.Random):
    nfragments = rng.randint(1, 5)
    fragments = [[float(rng.choice(ATOMS)) for _ in range(rng.randint(1, 3))] for _ in range(nfragments)]

    def some(values, p_given):
        return rng.choice(values) if rng.random() < p_given else None

    partly = rng.random() < 0.5  # else every fragment value is missing, the common case
    return (
        fragments,
        some([0, 0, 1, -1, 2, -2], 0.7),
        [some([0, 0, 1, -1], 0.4) if partly else None for _ in fragments],
        some([1, 1, 2, 3, 4, 5], 0.5),
        [some([1, 2, 3], 0.4) if partly else None for _ in fragments],
    )


def qcelemental_fill(fragments, *args):
    zeff = np.array([z for fragment in fragments for z in fragment])
    separators = np.cumsum([len(f) for f in fragments])[:-1]
    try:
        return validate_and_fill_chgmult(zeff, separators, *(list(a) if isinstance(a, list) else a for a in args))
    except ValidationError:
        return "refused"


def our_fill(fragments, *args):
    try:
        return chgmult.fill(fragments, *(list(a) if isinstance(a, list) else a for a in args))
    except chgmult.ChargeMultiplicityError:
        return "refused"


def test_the_fill_equals_qcelementals_on_generated_problems():
    rng = random.Random(20261126)
    outcomes = {"filled": 0, "refused": 0}
    for _ in range(700):
        problem = random_problem(rng)
        expected = qcelemental_fill(*problem)
        assert our_fill(*problem) == expected, problem
        outcomes["refused" if expected == "refused" else "filled"] += 1
    assert min(outcomes.values()) > 150, outcomes  # both outcomes well exercised


@pytest.mark.parametrize(
    "problem",
    [
        # the input that gave a different answer: a neutral dimer asked to be a triplet
        ([[8.0, 1.0, 1.0], [8.0, 1.0, 1.0]], 0, [None, None], 3, [None, None]),
        ([[8.0, 1.0, 1.0]] * 6, 0, [None] * 6, 5, [None] * 6),  # the high spin lands on fragment 1
        ([[8.0, 1.0]] + [[8.0, 1.0, 1.0]] * 5, 0, [None] * 6, None, [None] * 6),  # a radical
        ([[8.0, 1.0, 1.0, 1.0]] + [[8.0, 1.0, 1.0]] * 5, 1, [None] * 6, None, [None] * 6),  # H3O+ first
        ([[8.0, 1.0, 1.0]] * 5 + [[8.0, 1.0, 1.0, 1.0]], 1, [None] * 6, None, [None] * 6),  # ... and last
        ([[0.0, 0.0, 0.0], [8.0, 1.0, 1.0]], None, [None, None], None, [None, None]),  # a ghost fragment
        ([[7.0]] * 3, None, [None, 0, None], 4, [None, None, 2]),
    ],
)
def test_the_fill_equals_qcelementals_on_chosen_problems(problem):
    assert our_fill(*problem) == qcelemental_fill(*problem)


def test_hundreds_of_fragments_are_filled_in_milliseconds():
    """QCElemental's search would need 2**300 candidates in memory; the walk visits a few per fragment."""
    start = time.perf_counter()
    filled = chgmult.fill([[8.0, 1.0, 1.0]] * 300, 0, [None] * 300, 3, [None] * 300)
    assert time.perf_counter() - start < 1
    assert filled["fragment_multiplicities"] == [3] + [1] * 299  # what QCElemental gives for 6 (above)


def test_a_search_that_would_not_end_asks_for_the_values(monkeypatch):
    monkeypatch.setattr(chgmult, "MAX_NODES", 5)
    with pytest.raises(chgmult.ChargeMultiplicityError, match="give fragment_charges and fragment_multiplicities"):
        chgmult.fill([[8.0, 1.0, 1.0]] * 20, 0, [None] * 20, 3, [None] * 20)


# Whole molecules: water, OH radical, hydronium, ammonia; Angstrom.
MONOMERS = {
    "water": [("O", 0.0, 0.0, 0.0), ("H", 0.757, 0.586, 0.0), ("H", -0.757, 0.586, 0.0)],
    "hydroxyl": [("O", 0.0, 0.0, 0.0), ("H", 0.0, 0.0, 0.97)],
    "hydronium": [("O", 0.0, 0.0, 0.0), ("H", 0.94, 0.0, 0.3), ("H", -0.47, 0.81, 0.3), ("H", -0.47, -0.81, 0.3)],
    "ammonia": [("N", 0.0, 0.0, 0.0), ("H", 0.94, 0.0, 0.38), ("H", -0.47, 0.81, 0.38), ("H", -0.47, -0.81, 0.38)],
}


def molecule_of(names, **fields):
    symbols, geometry, fragments = [], [], []
    for k, name in enumerate(names):
        start = len(symbols)
        for symbol, *xyz in MONOMERS[name]:
            symbols.append(symbol)
            geometry.extend((x + 4.0 * k) * BOHR_PER_ANGSTROM for x in xyz)
        fragments.append(list(range(start, len(symbols))))
    return {"symbols": symbols, "geometry": geometry, "fragments": fragments, **fields}


def test_whole_molecules_get_exactly_qcelementals_charges_and_multiplicities():
    rng = random.Random(7)
    compared = 0
    for _ in range(40):
        names = [rng.choice(list(MONOMERS)) for _ in range(rng.randint(2, 4))]
        fields = {
            key: value
            for key, value in {
                "molecular_charge": rng.choice([None, 0, 1, names.count("hydronium")]),
                "molecular_multiplicity": rng.choice([None, None, 1, 2, 3]),
            }.items()
            if value is not None
        }
        mol = molecule_of(names, **fields)
        try:
            reference = Molecule(**mol)
        except ValidationError:
            with pytest.raises(InvalidInput, match="chg/mult|do not fit together"):
                normalize({**mbe_input(2), "molecule": mol})
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InputWarning)  # the fill may warn here; the values are what counts
            ours = normalize({**mbe_input(2), "molecule": mol}).model.molecule
        for field in ("fragment_charges", "fragment_multiplicities", "molecular_charge", "molecular_multiplicity"):
            assert getattr(ours, field) == getattr(reference, field), (names, fields, field)
        compared += 1
    assert compared >= 15


@pytest.mark.slow
def test_a_triplet_dimer_without_fragment_multiplicities_gives_qcmanybodys_energy():
    """Once computed as two singlets, 0.196 Eh from QCManyBody's answer, without a word."""
    import qcmb_dask

    data = mbe_input(2, keywords={"bsse_type": "nocp"})
    del data["molecule"]["fragment_charges"], data["molecule"]["fragment_multiplicities"]
    data["molecule"]["molecular_multiplicity"] = 3
    reference = qcmanybody_reference(data)
    with pytest.warns(InputWarning, match="fragment 1 multiplicity 3"):
        ours = qcmb_dask.compute(data, "sync", cache=False, progress=False)
    assert_same_result(ours, reference)
