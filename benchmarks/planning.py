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

from common import median, parser
from systems import mbe_input

import qcmb_dask
from qcmb_dask.graph import build


def measure(fn, repeat: int = 1, memory: bool = True):
    """(result, median seconds, peak MiB of Python allocations). Timed without tracemalloc, which slows
    allocation-heavy code several-fold; the memory peak comes from one more, traced, run."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    peak = float("nan")
    if memory:
        tracemalloc.start()
        fn()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return out, median(times), peak


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
    p = parser(__doc__)
    p.add_argument(
        "--skip-qcmanybody-above",
        type=int,
        default=None,
        help="time QCManyBody only up to this many waters (its (H2O)64 takes many minutes)",
    )
    args = p.parse_args()
    compared = [8, 16] if args.quick else [16, 32, 64]
    alone = [] if args.quick else [(128, 2, "cp"), (30, 3, "nocp")]
    if args.skip_qcmanybody_above:
        alone = [(n, 2, "cp") for n in compared if n > args.skip_qcmanybody_above] + alone
        compared = [n for n in compared if n <= args.skip_qcmanybody_above]
    ours(mbe_input(4, 2))  # warm-up: imports (PySCF's basis library for the cost model)
    print(f"{'system':>24} {'fragments':>9} {'qcmb_dask s':>11} {'MiB':>7} {'QCManyBody s':>12} {'ratio':>7}")
    for n in compared:
        data = mbe_input(n, 2, "cp", fragment_charges=False)
        reference_data = mbe_input(n, 2, "cp")
        n_ours, t_ours, m_ours = measure(lambda: ours(data), repeat=3)  # noqa: B023  called right here
        n_ref, t_ref, _ = measure(lambda: qcmanybody(reference_data), memory=False)  # noqa: B023
        assert n_ours == n_ref
        label = f"(H2O){n} 2-body cp"
        print(f"{label:>24} {n_ours:9d} {t_ours:11.3f} {m_ours:7.1f} {t_ref:12.2f} {t_ref / t_ours:7.0f}x", flush=True)
    for n, nbody, bsse in alone:
        data = mbe_input(n, nbody, bsse, fragment_charges=False)
        n_ours, t_ours, m_ours = measure(lambda: ours(data), repeat=3)  # noqa: B023  called right here
        print(f"{f'(H2O){n} {nbody}-body {bsse}':>24} {n_ours:9d} {t_ours:11.3f} {m_ours:7.1f} {'-':>12} {'-':>7}")


if __name__ == "__main__":
    main()
