"""QCSchema molecule -> PySCF ``Mole``: ghost atoms, charge and spin, basis, embedding charges."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import numpy as np
from qcengine.exceptions import InputError

from .options import PySCFOptions


def build_mole(molecule, basis: str, options: PySCFOptions, *, memory_gib: float | None = None):
    """Build a PySCF ``Mole`` in Bohr, in the molecule's own frame, with output captured in memory.

    Ghost atoms (``molecule.real == False``) become PySCF ``ghost-X`` atoms: they carry the basis
    functions of element X but no nucleus and no electrons, which is what counterpoise needs.
    """
    from pyscf import gto
    from pyscf.lib.exceptions import BasisNotFoundError

    real = molecule.real if molecule.real is not None else [True] * len(molecule.symbols)
    atoms = []
    for symbol, is_real, xyz in zip(molecule.symbols, real, np.asarray(molecule.geometry).reshape(-1, 3)):
        element = symbol.capitalize()
        atoms.append((element if is_real else f"ghost-{element}", tuple(float(x) for x in xyz)))

    charge = float(molecule.molecular_charge)
    if abs(charge - round(charge)) > 1e-8:
        raise InputError(f"PySCF needs an integer molecular charge, got {charge}.")

    mol = gto.Mole()
    mol.atom = atoms
    mol.unit = "Bohr"
    mol.basis = basis
    mol.charge = int(round(charge))
    mol.spin = int(molecule.molecular_multiplicity) - 1
    mol.cart = options.cartesian
    mol.symmetry = False
    mol.verbose = options.verbose
    mol.stdout = io.StringIO()
    if memory_gib:
        mol.max_memory = max(500.0, memory_gib * 1024.0)  # PySCF counts MB
    try:
        mol.build(dump_input=True, parse_arg=False)
    except BasisNotFoundError as err:
        raise InputError(f"Basis set {basis!r} is not in PySCF's basis library ({err}).") from err
    except RuntimeError as err:
        # PySCF reports an impossible electron count / spin this way.
        raise InputError(f"PySCF could not build the molecule: {err}") from err
    return mol


def check_basis(basis: str, elements: Sequence[str]) -> None:
    """InputError unless PySCF's basis library has ``basis`` for every element (ghosts need it too)."""
    from pyscf import gto
    from pyscf.lib.exceptions import BasisNotFoundError

    missing = []
    for element in elements:
        with warnings.catch_warnings():
            # PySCF suggests basis-set-exchange for every unknown name; our message says what is wrong.
            warnings.simplefilter("ignore", UserWarning)
            try:
                gto.basis.load(basis, element)
            except BasisNotFoundError:
                missing.append(element)
    if missing:
        raise InputError(
            f"Basis set {basis!r} is not in PySCF's basis library for {', '.join(missing)}: check the spelling "
            "(e.g. 6-31g*, cc-pvdz, def2-svp) or see pyscf.gto.basis for the names it knows."
        )


def embedding_charges(molecule) -> tuple[np.ndarray, np.ndarray] | None:
    """Point charges from ``molecule.extras["embedding_charges"]``: QCManyBody's ``[[q, [x, y, z]], ...]`` in Bohr."""
    raw: list | None = (molecule.extras or {}).get("embedding_charges")
    if not raw:
        return None
    try:
        charges = np.array([float(q) for q, _ in raw])
        coords = np.array([[float(x) for x in xyz] for _, xyz in raw]).reshape(-1, 3)
    except (TypeError, ValueError) as err:
        raise InputError(f"embedding_charges must be a list of [charge, [x, y, z]] in Bohr: {err}") from err
    return coords, charges
