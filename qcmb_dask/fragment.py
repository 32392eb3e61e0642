"""The worker side: one fragment through QCEngine, returning a compact result.

Knows nothing about clusters; runs the same under the synchronous scheduler and on any Dask worker.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .errors import FragmentError


@dataclass(frozen=True)
class FragmentJob:
    """What a worker needs for one calculation besides the parent molecule (small, cheap to ship)."""

    label: str
    nbody: int
    real: tuple
    basis: tuple
    program: str
    specification: dict
    #: 1-based fragment -> atom charges, QCManyBody's ``embedding_charges``; None without embedding.
    embedding_charges: Optional[Dict[int, List[float]]]
    #: QCEngine task_config: cores and memory (GiB) for this calculation.
    task_config: dict
    #: keep the whole AtomicResult (ManyBody protocol ``cluster_results: all``)
    keep_atomic_result: bool


@dataclass
class FragmentOutput:
    """The compact result the analysis needs: energies/derivatives, and the AtomicResult only when asked."""

    label: str
    nbody: int
    properties: Dict[str, Any]
    wall_time: float
    provenance: Dict[str, Any] = field(default_factory=dict)
    atomic_result: Any = None


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
    mol = parent.get_fragment(real_0, ghost_0, orient=False, group_fragments=False)
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


def atomic_input(job: FragmentJob, molecule):
    """The AtomicInput for a fragment; embedding charges go where the program expects them."""
    from qcelemental.models.v2 import AtomicInput

    inp = AtomicInput(molecule=molecule, specification=copy.deepcopy(job.specification))
    charges = molecule.extras.get("embedding_charges")
    if charges and job.program.lower() == "psi4":
        # As QCManyBody's computer does: Psi4 takes them as external potentials.
        fkw = inp.specification.keywords.get("function_kwargs", {})
        fkw.update({"external_potentials": charges})
        inp.specification.keywords["function_kwargs"] = fkw
    return inp


def run_fragment(parent, job: FragmentJob, after: Any = None) -> FragmentOutput:
    """Run one fragment. ``after`` only orders the graph (``ordering="by_level"``) and is ignored."""
    import qcengine  # a worker that unpickles this function has imported qcmb_dask: PySCF is registered

    start = time.time()
    molecule = build_fragment_molecule(parent, job.real, job.basis, job.embedding_charges)
    result = qcengine.compute(atomic_input(job, molecule), job.program, raise_error=False, task_config=job.task_config)
    if not result.success:
        model = job.specification.get("model", {})
        raise FragmentError(
            job.label,
            job.nbody,
            job.program,
            model.get("method", "?"),
            model.get("basis", "?"),
            result.error.error_type,
            result.error.error_message,
        )
    return FragmentOutput(
        label=job.label,
        nbody=job.nbody,
        properties=return_properties(result),
        wall_time=time.time() - start,
        provenance=result.provenance.model_dump(),
        atomic_result=result if job.keep_atomic_result else None,
    )


def return_properties(result) -> Dict[str, Any]:
    """energy/gradient/hessian, picked exactly as QCManyBody's computer picks them from an AtomicResult."""
    props = {}
    for p in ("energy", "gradient", "hessian"):
        value = getattr(result.properties, f"return_{p}", None)
        if value is not None:
            props[p] = np.asarray(value) if p != "energy" else value
    return props
