"""A cost model per fragment calculation, for priorities (longest first) and for ``plan()``'s estimates.

cost = (basis functions incl. ghost atoms) ** (method's scaling) * (driver factor), in arbitrary units:
only ratios matter. Counterpoise fragments carry the whole cluster's basis, so they cost like the
cluster at their method.
"""

from __future__ import annotations

import functools
from typing import Dict, Sequence

#: Formal scaling with system size (basis functions).
METHOD_EXPONENT = {"hf": 3.0, "scf": 3.0, "mp2": 5.0, "ccsd": 6.0, "ccsd(t)": 7.0}
DFT_EXPONENT = 3.0  # any other method name is taken as a DFT functional
#: A gradient costs about one more energy; a hessian adds one response per nuclear coordinate.
GRADIENT_FACTOR = 2.0
HESSIAN_FACTOR_PER_ATOM = 1.0


@functools.lru_cache(maxsize=None)
def basis_functions(basis: str, element: str) -> int:
    """Spherical basis functions of ``element`` in ``basis``, from PySCF's basis library.

    Unknown basis names fall back to a minimal-basis-like count (the cost only orders fragments).
    """
    try:
        from pyscf.gto import basis as library

        shells = library.load(basis, element.capitalize())
    except Exception:  # unknown basis/element in PySCF's library: any program may still know it
        return _minimal_basis_estimate(element)
    count = 0
    for shell in shells:
        angular, first = shell[0], shell[1]
        primitive = shell[2] if isinstance(first, int) else first  # [l, kappa, (exp, c...)] form
        count += (2 * angular + 1) * (len(primitive) - 1)
    return count or _minimal_basis_estimate(element)


def _minimal_basis_estimate(element: str) -> int:
    from qcelemental import periodictable

    z = periodictable.to_Z(element)
    return 1 if z <= 2 else 5 if z <= 10 else 9 if z <= 18 else 18


def fragment_basis_functions(basis: str, fragment_symbols: Sequence[Sequence[str]]) -> Dict[int, int]:
    """1-based fragment -> number of basis functions of its atoms in ``basis``."""
    return {i + 1: sum(basis_functions(basis, s) for s in symbols) for i, symbols in enumerate(fragment_symbols)}


def method_exponent(method: str) -> float:
    return METHOD_EXPONENT.get(method.lower(), DFT_EXPONENT)


def estimate(nbf: int, natoms: int, method: str, driver: str) -> float:
    """Relative cost of one calculation with ``nbf`` basis functions (real + ghost) and ``natoms`` atoms."""
    factor = 1.0
    if driver == "gradient":
        factor = GRADIENT_FACTOR
    elif driver == "hessian":
        factor = GRADIENT_FACTOR + HESSIAN_FACTOR_PER_ATOM * 3 * natoms
    return float(nbf) ** method_exponent(method) * factor
