"""Geometries whose distances no molecule has: coordinates in Angstrom where QCSchema means Bohr, above all.

A QCSchema geometry is in Bohr. The same numbers read as Angstrom squeeze every bond to 0.53 of its length, and
QC programs compute such a molecule without complaint: a wrong number with rc 0. Bonds measured against the
sum of the two atoms' covalent radii (QCElemental's, Alvarez 2008) tell the two apart: real bonds lie between
about 0.77 (triple bonds) and 1.2 (H2) of that sum; Angstrom read as Bohr puts them between 0.41 and 0.64.
"""

from __future__ import annotations

from qcmb_dask.errors import InvalidInput

BOHR_PER_ANGSTROM = 1.8897261246257702
#: Below this fraction of the covalent radii's sum no bond exists (the shortest, triple bonds, are near 0.77).
SHORTEST_BOND_FRACTION = 0.7


#: what an input says to run a geometry with bonds this short all the same (a metal-metal multiple bond)
ALLOW_SHORT_BONDS = 'specification.extras = {"qcmb_dask": {"short_bonds": true}}'


def check_distances(symbols, geometry_bohr, where: str = "molecule.geometry") -> None:
    """Refuse a geometry whose closest pair of atoms is closer than any bond, saying whether the coordinates look
    like Angstrom (then naming the factor) or are simply too close."""
    closest = closest_contact(symbols, geometry_bohr)
    if closest is None:
        return
    fraction, i, j, distance, radii_sum = closest
    if fraction >= SHORTEST_BOND_FRACTION:
        return
    pair = f"atoms {i} ({symbols[i]}) and {j} ({symbols[j]})"
    bond = f"{symbols[i]}-{symbols[j]}"
    as_angstrom = distance  # the same number, read in the unit the user probably meant
    if fraction * BOHR_PER_ANGSTROM >= SHORTEST_BOND_FRACTION:
        raise InvalidInput(
            f"{where}: {pair} are {distance:.3f} Bohr ({distance / BOHR_PER_ANGSTROM:.3f} Angstrom) apart, "
            f"{fraction:.2f} times the {bond} single-bond length ({radii_sum:.2f} Bohr); no molecule has bonds that "
            f"short. The coordinates look like Angstrom ({as_angstrom:.3f} Angstrom is an ordinary {bond} distance), "
            "but a QCSchema geometry is in Bohr: multiply every coordinate by 1.8897261 (Bohr per Angstrom), or give "
            "the molecule as a Psi4-style string with 'units angstrom' or as an .xyz file (Angstrom). If the distances "
            f"are what you mean (a metal-metal multiple bond), say so: {ALLOW_SHORT_BONDS}."
        )
    raise InvalidInput(
        f"{where}: {pair} are {distance:.3f} Bohr ({distance / BOHR_PER_ANGSTROM:.3f} Angstrom) apart, "
        f"{fraction:.2f} times the {bond} single-bond length ({radii_sum:.2f} Bohr), closer than any bond: check their "
        f"coordinates (in Bohr). If the distance is what you mean, say so: {ALLOW_SHORT_BONDS}."
    )


def closest_contact(symbols, geometry_bohr):
    """(distance / sum of covalent radii, atom i, atom j, distance in Bohr, radii sum in Bohr) of each atom's
    nearest neighbour, the smallest fraction of all; None for fewer than two atoms."""
    import numpy as np
    from scipy.spatial import cKDTree

    xyz = np.asarray(geometry_bohr, dtype=float).reshape(-1, 3)
    if len(xyz) < 2:
        return None
    radius_of = {s: covalent_radius_bohr(s) for s in set(symbols)}
    radii = np.array([radius_of[s] for s in symbols])
    distances, neighbours = cKDTree(xyz).query(xyz, k=2)
    itself = neighbours[:, 1] == np.arange(len(xyz))  # two atoms on one point: either may come first
    nearest, partner = distances[:, 1], np.where(itself, neighbours[:, 0], neighbours[:, 1])
    sums = radii + radii[partner]
    fractions = nearest / sums
    i = int(np.argmin(fractions))
    j = int(partner[i])
    return float(fractions[i]), min(i, j), max(i, j), float(nearest[i]), float(sums[i])


def covalent_radius_bohr(symbol: str) -> float:
    """QCElemental's covalent radius (Alvarez 2008), read from its table: ``covalentradii.get`` converts units
    through pint, which imports Dask, and planning must not."""
    from qcelemental import covalentradii

    entry = covalentradii.cr.get(symbol.capitalize())
    if entry is None:  # an element beyond the table (Alvarez stops at Cm): a generous radius, which checks nothing
        return 3.0
    return float(entry.data) * BOHR_PER_ANGSTROM
