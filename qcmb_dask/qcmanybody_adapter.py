"""Everything taken from QCManyBody (and QCElemental's conversion it prints with), in one leaf.

qcmb_dask runs QCManyBody's expansion as a graph; these are the places where it must do exactly what
QCManyBody's sequential ``ManyBodyComputer`` does. Each block names the upstream lines it mirrors
(qcmanybody 0.8.0); ``tests/test_fragment_molecule.py`` and ``tests/test_compute_vs_qcmanybody.py`` fail
when they drift. Imported by the planning floor and by workers: it imports no floor.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from qcmanybody import ManyBodyCore
from qcmanybody.models.v2 import ManyBodyInput
from qcmanybody.utils import labeler
from qcmanybody.v2 import ManyBodyComputer as QCMBComputer

from qcmb_dask.store import DRIVER_RANK


def hartree_to_kcal() -> float:
    """QCElemental's factor, as QCManyBody's own table prints it (``qcmanybody/utils.py``, ``hartree2kcalmol``)."""
    from qcelemental import constants

    return constants.hartree2kcalmol


@dataclass(frozen=True)
class NormalizedInput:
    """The input as a QCManyBody v2 model, and the schema version the result must have."""

    model: ManyBodyInput
    result_schema_version: int


def qcmb_computer(normalized: NormalizedInput) -> QCMBComputer:
    """QCManyBody's own computer, validated, without running anything: the single source of MBE semantics."""
    return QCMBComputer.from_manybodyinput(normalized.model, build_tasks=False)


def atomic_specifications(computer: QCMBComputer) -> dict[str, dict]:
    """Per model chemistry, the program and the AtomicSpecification dict, as QCManyBody's computer forms them."""
    specifications = {}
    for mc, spec in computer.input_data.specification.specification.items():
        spec = spec.model_dump()
        program = spec.pop("program")
        spec["driver"] = computer.driver  # the many-body driver overrides the atomic one
        spec.pop("schema_name", None)
        specifications[mc] = {"program": program, "specification": spec}
    return specifications


# Mirrors ManyBodyCore.iterate_molecules's loop (qcmanybody/core.py, lines 244-252), without the molecules.
def iterate_calculations(core: ManyBodyCore) -> Iterator[tuple[str, str, tuple[int, ...], tuple[int, ...]]]:
    """(model chemistry, label, real, basis) in exactly ``ManyBodyCore.iterate_molecules`` order, no molecules."""
    for mc, real, basis in unique_calculations(core):
        yield mc, labeler(mc, real, basis), real, basis


def unique_calculations(core: ManyBodyCore) -> Iterator[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    seen = set()
    for mc, compute_dict in core.compute_map.items():
        for compute_list in compute_dict["all"].values():
            for real, basis in compute_list:
                calc = (mc, tuple(real), tuple(basis))
                if calc not in seen:  # a label is a function of (mc, real, basis): same dedup, no JSON
                    seen.add(calc)
                    yield calc


def truncated_core(computer: QCMBComputer, nbody: int) -> ManyBodyCore:
    """QCManyBody's core for the same expansion truncated at ``nbody`` (no supersystem level)."""
    core = computer.qcmb_core
    levels = {k: mc for k, mc in core.levels.items() if k != "supersystem" and int(k) <= nbody}
    return ManyBodyCore(
        core.molecule,
        copy.copy(computer.bsse_type),
        levels,
        return_total_data=core.return_total_data,
        supersystem_ie_only=False,
        embedding_charges=core.embedding_charges,
    )


# Mirrors ManyBodyCore.iterate_molecules (qcmanybody/core.py, lines 238-275): the fragment molecules.
def prepare_parent(parent):
    """The parent molecule as workers use it: masses resolved once.

    QCElemental's ``Molecule.masses`` recomputes every mass from the periodic table on each access
    unless masses were given, and ``get_fragment`` reads it once per atom: quadratic in atoms, most
    of a fragment's set-up time on large clusters. Fragments always receive explicit masses, so
    caching them on the parent changes no fragment (tested against ``iterate_molecules``).
    """
    if parent.masses_ is None:
        parent = parent.model_copy(update={"masses_": parent.masses})
    return parent


def build_fragment_molecule(parent, real: Sequence[int], basis: Sequence[int], embedding_charges=None):
    """The fragment molecule exactly as ``ManyBodyCore.iterate_molecules`` builds it.

    Same geometry and frame, real/ghost mask, fragment charges and multiplicities, fix_* flags,
    and embedding charges (on fragments outside the basis) in ``extras``.
    """
    ghost_atoms = list(set(basis) - set(real))
    real_0 = [x - 1 for x in real]
    ghost_0 = [x - 1 for x in ghost_atoms]
    mol = fragment_of(parent, real_0, ghost_0)
    updates = {"fix_com": True, "fix_orientation": True}
    if parent.fix_symmetry == "c1":
        updates["fix_symmetry"] = "c1"
    mol = mol.model_copy(update=updates)

    if embedding_charges:
        nfragments = len(parent.fragments)
        charges = []
        for ifr in list(set(range(1, nfragments + 1)) - set(basis)):
            positions = parent.get_fragment(ifr - 1).geometry.tolist()
            charges.extend([[chg, xyz] for xyz, chg in zip(positions, embedding_charges[ifr])])
        mol.extras["embedding_charges"] = charges
    return mol


def fragment_of(parent, real: list[int], ghost: list[int]):
    """``parent.get_fragment(real, ghost, orient=False, group_fragments=False)``, built from the chosen fragments'
    atoms only. QCElemental's loops over every atom and fragment of the parent: 1 ms a dimer of 1,414 waters, 0.3
    ms of 141, the larger part of a worker's time per calculation in a run of a million. Same constructor
    arguments, so the same molecule (tested against ``get_fragment``): atoms in the parent's order, fragments in
    the parent's order with atoms renumbered, ghost fragments neutral singlets, the name ``get_fragment`` gives.
    """
    import numpy as np

    if set(real) & set(ghost):
        raise TypeError(f"Molecule:get_fragment: real and ghost sets are overlapping! ({real}, {ghost}).")
    chosen = sorted(set(real) | set(ghost))
    fragments = parent.fragments
    atoms = sorted(int(i) for f in chosen for i in fragments[f])
    renumbered = {atom: n for n, atom in enumerate(atoms)}
    real_set = set(real)
    real_atoms = {int(i) for f in real for i in fragments[f]}
    symbols, masses = parent.symbols, parent.masses
    charges = [parent.fragment_charges[f] if f in real_set else 0 for f in chosen]
    multiplicities = [parent.fragment_multiplicities[f] if f in real_set else 1 for f in chosen]
    name = (parent.name if parent.name is not None else "") + " (" + str(real) + "," + str(ghost) + ")"
    return type(parent)(
        orient=False,
        name=name,
        fragments=[[renumbered[int(i)] for i in fragments[f]] for f in chosen],
        fragment_charges=charges,
        fragment_multiplicities=multiplicities,
        symbols=[symbols[i] for i in atoms],
        geometry=np.vstack([parent.geometry[i] for i in atoms]),
        real=[i in real_atoms for i in atoms],
        masses=[masses[i] for i in atoms],
    )


def psi4_external_potentials(inp, molecule, program: str):
    """Embedding charges for Psi4 go in as external potentials, as QCManyBody's computer passes them
    (qcmanybody/v2/computer.py, lines 424-429); PySCF's harness reads them from the molecule's extras."""
    charges = molecule.extras.get("embedding_charges")
    if charges and program.lower() == "psi4":
        fkw = inp.specification.keywords.get("function_kwargs", {})
        fkw.update({"external_potentials": charges})
        inp.specification.keywords["function_kwargs"] = fkw
    return inp


# Mirrors the property picking of QCManyBody's computer (qcmanybody/v2/computer.py, lines 444-451).
def return_properties(result, driver: str = "hessian") -> dict[str, Any]:
    """energy/gradient/hessian, picked exactly as QCManyBody's computer picks them from an AtomicResult.

    Only what ``driver`` asks for: a stored gradient result serving an energy run gives its energy alone,
    as the energy calculation itself would have.
    """
    props = {}
    for p in ("energy", "gradient", "hessian")[: DRIVER_RANK[driver] + 1]:
        value = getattr(result.properties, f"return_{p}", None)
        if value is not None:
            props[p] = np.asarray(value) if p != "energy" else value
    return props


#: QCManyBody builds a computer with embedding charges only where this variable is set
EMBEDDING_VARIABLE = "QCMANYBODY_EMBEDDING_CHARGES"


def accept_embedding_charges(normalized: NormalizedInput) -> None:
    """QCManyBody accepts embedding charges only with QCMANYBODY_EMBEDDING_CHARGES set. The client checked
    that when it planned; a worker on another node may lack the variable. ``compute`` sets it on its workers
    once (:class:`qcmb_dask.worker.plugins.ProcessSettings`); a graph run elsewhere sets it here, and it is
    never unset: a thread unsetting it would make QCManyBody refuse the analysis another thread is building."""
    if normalized.model.specification.keywords.embedding_charges:
        os.environ.setdefault(EMBEDDING_VARIABLE, "1")
