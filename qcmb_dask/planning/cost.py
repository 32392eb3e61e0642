"""A cost model per fragment calculation, for priorities (longest first) and ``plan()``'s estimates.

Estimates are rough one-core seconds for PySCF, from basis functions (ghost atoms included:
counterpoise fragments carry the whole cluster's basis) and atoms. The coefficients were fitted to
timings of water clusters (1-4 waters; STO-3G, 6-31G, cc-pVDZ, aug-cc-pVDZ; PySCF 2.14, one core)
on the development machine: small calculations are dominated by fixed costs, large ones by the
method's formal scaling, and both matter for ordering. Other programs differ by a factor, which
leaves the order of their fragments, all that priorities need, mostly intact; what earlier runs
measured corrects that factor per program, method, basis and driver (:mod:`qcmb_dask.planning.cost_history`).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

# SCF: fixed + per atom (integral screening, set-up) + cubic in basis functions (diagonalization, J/K).
SCF_FIXED, SCF_PER_ATOM, SCF_CUBIC = 0.05, 0.01, 2.7e-6
DFT_FACTOR, DFT_GRID_PER_ATOM = 1.5, 0.03
#: Correlation on top of the SCF: fixed seconds and (coefficient, power of basis functions) terms.
CORRELATION: dict[str, tuple[float, tuple[tuple[float, int], ...]]] = {
    "mp2": (0.0, ((9.6e-11, 5),)),
    "ccsd": (0.4, ((1.8e-10, 6),)),
    "ccsd(t)": (0.45, ((1.8e-10, 6), (1.5e-12, 7))),
}
#: Tight binding (tblite's GFN-xTB, minimal basis): fixed + cubic in basis functions, about 1,000 times cheaper
#: than HF/STO-3G (1 ms for a water, 0.1 s for 16, one core)
TIGHT_BINDING = ("gfn2-xtb", "gfn1-xtb", "ipea1-xtb")
TB_FIXED, TB_CUBIC = 1e-3, 1.2e-7
#: A gradient costs about two energies (SCF) or three (correlated: response equations);
#: a hessian adds one response per nuclear coordinate.
GRADIENT_FACTOR = {"scf": 2.0, "correlated": 3.0}
HESSIAN_FACTOR_PER_COORDINATE = 0.3


@functools.cache
def basis_functions(basis: str, element: str) -> int:
    """Spherical basis functions of ``element`` in ``basis``, from PySCF's basis library read as data (a neutral
    source whatever the program: its warnings, such as its advice to install basis-set-exchange, are PySCF's
    business, not a Psi4 or NWChem run's).

    Unknown basis names fall back to a minimal-basis-like count (the cost only orders fragments); whether the
    program knows the basis is the program's question (its harness's ``check_request``, or its own error).
    """
    try:
        from pyscf.gto import basis as library

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shells = library.load(basis, element.capitalize())
    except Exception:  # unknown to PySCF's library: another program may still know it
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


def fragment_basis_functions(basis: str, fragment_symbols: Sequence[Sequence[str]]) -> dict[int, int]:
    """1-based fragment -> number of basis functions of its atoms in ``basis``."""
    return {i + 1: sum(basis_functions(basis, s) for s in symbols) for i, symbols in enumerate(fragment_symbols)}


def estimate(nbf: int, natoms: int, method: str, driver: str) -> float:
    """Rough one-core seconds for one calculation with ``nbf`` basis functions (real + ghost) and ``natoms`` atoms."""
    method = method.lower()
    if method in TIGHT_BINDING:
        seconds = TB_FIXED + TB_CUBIC * nbf**3
        return seconds * GRADIENT_FACTOR["scf"] if driver in ("gradient", "hessian") else seconds
    scf = SCF_FIXED + SCF_PER_ATOM * natoms + SCF_CUBIC * nbf**3
    if method not in ("hf", "scf") and method not in CORRELATION:  # a DFT functional
        scf = scf * DFT_FACTOR + DFT_GRID_PER_ATOM * natoms
    fixed, terms = CORRELATION.get(method, (0.0, ()))
    correlation = fixed + sum(coefficient * float(nbf) ** power for coefficient, power in terms) if terms else 0.0
    seconds = scf + correlation
    if driver == "gradient":
        seconds *= GRADIENT_FACTOR["correlated" if terms else "scf"]
    elif driver == "hessian":
        seconds *= GRADIENT_FACTOR["scf"] + HESSIAN_FACTOR_PER_COORDINATE * 3 * natoms
    return seconds


def duration(seconds: float) -> str:
    """A duration as people read it: ``42 s``, ``3 min 07 s``, ``2 h 05 min``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
