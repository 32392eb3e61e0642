"""Planning time and client memory vs cluster size, against QCManyBody's iterate_molecules.

qcmb_dask: plan + graph build, from a plain dict (no fragment charges given: filled for you).
QCManyBody: ManyBodyComputer(build_tasks=False) + consuming iterate_molecules (one QCElemental
Molecule per fragment, in the calling process), with fragment charges given (without them its
validation is exponential in the fragment count).

    python benchmarks/planning.py           # (H2O)16, 32, 64 2-body CP vs QCManyBody; 128 and (H2O)30 3-body nocp alone
    python benchmarks/planning.py --quick   # (H2O)8, 16, for CI
"""

from __future__ import annotations

import time
import tracemalloc

from common import parser
from systems import mbe_input

import qcmb_dask
from qcmb_dask.graph import build


def measure(fn):
    tracemalloc.start()
    start = time.perf_counter()
    out = fn()
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, elapsed, peak / 2**20


def ours(data):
    plan = qcmb_dask.plan(data)
    build(plan, task_config={"ncores": 1})
    return len(plan)


def qcmanybody(data):
    from qcmanybody.models.v2 import ManyBodyInput
    from qcmanybody.v2 import ManyBodyComputer

    computer = ManyBodyComputer.from_manybodyinput(ManyBodyInput(**data), build_tasks=False)
    return sum(1 for _ in computer.qcmb_core.iterate_molecules())


def main() -> None:
    args = parser(__doc__).parse_args()
    compared = [8, 16] if args.quick else [16, 32, 64]
    alone = [] if args.quick else [(128, 2, "cp"), (30, 3, "nocp")]
    ours(mbe_input(4, 2))  # warm-up: imports (PySCF's basis library for the cost model)
    print(f"{'system':>24} {'fragments':>9} {'qcmb_dask s':>11} {'MB':>7} {'QCManyBody s':>12} {'MB':>7} {'ratio':>7}")
    for n in compared:
        n_ours, t_ours, m_ours = measure(lambda: ours(mbe_input(n, 2, "cp", fragment_charges=False)))
        n_ref, t_ref, m_ref = measure(lambda: qcmanybody(mbe_input(n, 2, "cp")))
        assert n_ours == n_ref
        print(f"{f'(H2O){n} 2-body cp':>24} {n_ours:9d} {t_ours:11.3f} {m_ours:7.1f} {t_ref:12.2f} {m_ref:7.1f} "
              f"{t_ref / t_ours:6.0f}x")
    for n, nbody, bsse in alone:
        n_ours, t_ours, m_ours = measure(lambda: ours(mbe_input(n, nbody, bsse, fragment_charges=False)))
        print(f"{f'(H2O){n} {nbody}-body {bsse}':>24} {n_ours:9d} {t_ours:11.3f} {m_ours:7.1f} {'-':>12} {'-':>7} {'-':>7}")


if __name__ == "__main__":
    main()
