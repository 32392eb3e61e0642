"""A fragment's Hessian from its gradients at displaced geometries, for programs with gradients only.

The graph (:func:`qcmb_dask.graph.build_many`) gives such a fragment one task per displaced gradient (every
Cartesian coordinate of the fragment molecule, ghost atoms included, moved by +/- h) and one at the geometry
itself, each a calculation of its own in the result store; :func:`assemble` turns them into what the program's
own Hessian would have given the analysis: energy, gradient and the Hessian by central differences,
``H[i, j] = (g_j(x + h e_i) - g_j(x - h e_i)) / 2h``, symmetrized.
"""

from __future__ import annotations

import time

import numpy as np

from qcmb_dask.worker import events
from qcmb_dask.worker.fragment import FragmentFailure, FragmentJob, FragmentOutput, calculate


def run_part(parent, job: FragmentJob, after=None) -> FragmentOutput | FragmentFailure:
    """One gradient of the difference (at the geometry, or displaced): no fragment event, the assembly says it."""
    return calculate(parent, job)


def assemble(job: FragmentJob, step: float, reference, *displaced) -> FragmentOutput | FragmentFailure:
    """The fragment's energy, gradient and Hessian from its reference gradient and the ``2 * 3N`` displaced
    ones (ordered atom, axis, then + before -); a failed part fails the fragment, naming the part."""
    parts = [reference, *displaced]
    began = time.time() - max((p.wall_time for p in parts if isinstance(p, FragmentOutput)), default=0.0)
    failed = next((p for p in parts if isinstance(p, FragmentFailure)), None)
    if failed is not None:
        events.fragment_ended(job.run, job.label, job.nbody, False, False, began)
        return FragmentFailure(job.label, job.nbody, failed.error)
    gradients = np.array([np.asarray(p.properties["gradient"], dtype=float).ravel() for p in displaced])
    plus, minus = gradients[0::2], gradients[1::2]
    hessian = (plus - minus) / (2 * step)
    hessian = (hessian + hessian.T) / 2
    properties = dict(reference.properties)
    properties["hessian"] = hessian
    from_store = all(p.from_store for p in parts)
    events.fragment_ended(job.run, job.label, job.nbody, True, from_store, began)
    return FragmentOutput(
        label=job.label,
        nbody=job.nbody,
        properties=properties,
        wall_time=sum(p.wall_time for p in parts),
        provenance={**reference.provenance, "hessian": f"central differences of {len(displaced)} gradients"},
        atomic_result=None,
        from_store=from_store,
        escalated=next((p.escalated for p in parts if p.escalated), None),
        store_error=next((p.store_error for p in parts if p.store_error), None),
    )


def displacements(natom: int, step: float) -> list[tuple[int, int, float]]:
    """(atom, axis, signed step) in the order :func:`assemble` reads them."""
    return [(atom, axis, sign * step) for atom in range(natom) for axis in range(3) for sign in (1, -1)]
