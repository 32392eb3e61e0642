"""A many-body geometry optimization: qcmb_dask.optimize against geomeTRIC on QCManyBody's sequential path.

The reference is geomeTRIC's QCEngine route (``geometric.run_json``, as QCEngine's ``geometric`` procedure runs
it) with every gradient from QCEngine's ``qcmanybody`` procedure (QCManyBody's ManyBodyComputer, every core to
each fragment). geomeTRIC's QCEngine engine puts ``driver`` at the top of the input it sends, where a
ManyBodyInput has none: that key is dropped on the way (``tests/test_optimize.py`` does the same). qcmb_dask
runs one single-threaded fragment per core on the embedded cluster, started inside the timing, with a fresh
store. Both take the same steps; time per point and in all are compared.

    python benchmarks/optimization.py            # water hexamer (examples/), MP2/cc-pVDZ, 2-body nocp
    python benchmarks/optimization.py --quick    # water dimer HF/STO-3G, for CI
    python benchmarks/optimization.py --points 12   # both stopped after 12 optimization cycles: time per point
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import parser

import qcmb_dask
from qcmb_dask.clusters.resources import machine_cores

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def workload(quick: bool, method: str, basis: str) -> dict:
    molecule = _dimer() if quick else json.loads((EXAMPLES / "water-hexamer.json").read_text())["molecule"]
    method, basis = ("hf", "sto-3g") if quick else (method, basis)
    atomic = {"program": "pyscf", "driver": "gradient", "model": {"method": method, "basis": basis}, "keywords": {}}
    return {
        "molecule": molecule,
        "specification": {
            "driver": "gradient",
            "keywords": {"bsse_type": "nocp", "max_nbody": 2, "return_total_data": True},
            "specification": {"(auto)": atomic},
        },
    }


def _dimer() -> dict:
    """The first two waters of the README's trimer."""
    trimer = json.loads((EXAMPLES / "water-trimer.json").read_text())["molecule"]
    return {
        "symbols": trimer["symbols"][:6],
        "geometry": trimer["geometry"][:18],
        "fragments": trimer["fragments"][:2],
        "molecular_charge": 0,
    }


def sequential_reference(data: dict, keywords: dict) -> tuple[list[float], float]:
    """geomeTRIC's QCEngine route on QCEngine's qcmanybody procedure: the energy of every point, and seconds."""
    import geometric.engine
    import geometric.run_json
    import qcengine

    from qcmb_dask.programs import register_shipped

    register_shipped()
    energies = []

    def calc_new(self, coords, dirname):
        schema = copy.deepcopy(self.schema)
        schema.pop("driver")
        schema["molecule"]["geometry"] = coords.tolist()
        result = qcengine.compute(schema, "qcmanybody", raise_error=True)
        energies.append(result.properties.return_energy)
        self.schema_traj.append({"properties": {"return_energy": energies[-1]}, "molecule": {"geometry": coords}})
        print(f"  reference point {len(energies)}: {energies[-1]:.10f}", flush=True)
        return {"energy": energies[-1], "gradient": np.asarray(result.return_result).ravel()}

    geometric.engine.QCEngineAPI.calc_new = calc_new
    molecule = {**data["molecule"], "fix_com": True, "fix_orientation": True}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch, _inside(scratch):  # where it writes qce_optim.xyz
        out = geometric.run_json.geometric_run_json(
            {
                "keywords": {"program": "qcmanybody", **keywords},
                "initial_molecule": molecule,
                "input_specification": {"specification": data["specification"]},
            }
        )
    seconds = time.perf_counter() - began
    if not out["success"] and not ("maxiter" in keywords and "converge" in str(out.get("error"))):
        raise RuntimeError(out["error"])
    return energies, seconds


@contextlib.contextmanager
def _inside(directory: str):
    here = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(here)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--method", default="mp2")
    p.add_argument("--basis", default="cc-pvdz")
    p.add_argument("--points", type=int, help="stop both after this many optimization cycles (geomeTRIC's maxiter)")
    args = p.parse_args()
    keywords = {"maxiter": args.points} if args.points else {}
    data = workload(args.quick, args.method, args.basis)
    per_point = len(qcmb_dask.plan(data))
    print(f"workload: {per_point} calculations per point, {machine_cores()} cores", flush=True)

    with tempfile.TemporaryDirectory() as store:
        began = time.perf_counter()
        points_done = []
        try:
            ours = qcmb_dask.optimize(
                data, cache=store, progress=True, callback=lambda *point: points_done.append(point), **keywords
            )
            energy = ours.properties.return_energy
        except qcmb_dask.OptimizationNotConverged:  # --points: stopped where asked
            energy = points_done[-1][1]
        ours_seconds = time.perf_counter() - began
    qcmb_dask.close()
    reference, reference_seconds = sequential_reference(data, keywords)

    points = len(points_done)
    print(f"geomeTRIC on QCManyBody (sequential) {len(reference):3d} points {reference_seconds:8.1f} s "
          f"{reference_seconds / len(reference):7.2f} s/point  E {reference[-1]:.10f}")  # fmt: skip
    print(f"qcmb_dask.optimize (cold)            {points:3d} points {ours_seconds:8.1f} s "
          f"{ours_seconds / points:7.2f} s/point  E {energy:.10f}")  # fmt: skip
    print(f"speedup in all {reference_seconds / ours_seconds:.2f}x, per point "
          f"{(reference_seconds / len(reference)) / (ours_seconds / points):.2f}x; "
          f"last energies differ by {abs(energy - reference[-1]):.1e} Eh")  # fmt: skip


if __name__ == "__main__":
    main()
