"""Speedup over QCManyBody's sequential ManyBodyComputer on the same input and program (PySCF).

Both get every core: QCManyBody runs one fragment at a time with QCEngine's default task_config
(all cores to each fragment); qcmb_dask runs one fragment per core on the embedded LocalCluster. The README's
trimer, in fresh processes and with NWChem too, is ``first_second.py``.

    python benchmarks/speedup.py            # (H2O)4 MP2/cc-pVDZ 2-body CP, 10 fragments, 3 repetitions
    python benchmarks/speedup.py --quick    # (H2O)3 HF/STO-3G, for CI
    python benchmarks/speedup.py --waters 12 --bsse nocp   # (H2O)12 MP2/cc-pVDZ 2-body nocp, 78 fragments
"""

from __future__ import annotations

from common import median, parser, timed, warm_client
from systems import mbe_input

import qcmb_dask
from qcmb_dask.clusters.resources import machine_cores


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--waters", type=int, default=4)
    p.add_argument("--nbody", type=int, default=2)
    p.add_argument("--bsse", default="cp")
    p.add_argument("--method", default="mp2")
    p.add_argument("--basis", default="cc-pvdz")
    args = p.parse_args()
    if args.quick:
        data, repeat = mbe_input(3, 2, "cp", method="hf", basis="sto-3g"), args.repeat or 1
    else:
        data = mbe_input(args.waters, args.nbody, args.bsse, method=args.method, basis=args.basis)
        repeat = args.repeat or 3
    from qcmanybody.models.v2 import ManyBodyInput
    from qcmanybody.v2 import ManyBodyComputer

    mbin = ManyBodyInput(**data)
    cores = machine_cores()
    nfrag = len(qcmb_dask.plan(mbin))
    print(f"workload: {nfrag} fragments, {cores} cores")

    ManyBodyComputer.from_manybodyinput(mbin)  # warm-up: imports, PySCF's first-call setup
    sequential = [timed(lambda: ManyBodyComputer.from_manybodyinput(mbin)) for _ in range(repeat)]

    # cache=False: every repetition computes every fragment (a store would serve the second from disk).
    # Cold: compute() starts the embedded cluster; it keeps it for the next call, so close it between repetitions
    # (closing is outside the timing: it happens at exit, after an idle time, or with qcmb_dask.close()).
    cold = []
    for _ in range(repeat):
        cold.append(timed(lambda: qcmb_dask.compute(mbin, progress=False, cache=False)))
        qcmb_dask.close()
    # The second call of a process: compute() finds the embedded cluster the first one kept.
    qcmb_dask.compute(mbin, progress=False, cache=False)
    second = [timed(lambda: qcmb_dask.compute(mbin, progress=False, cache=False)) for _ in range(repeat)]
    qcmb_dask.close()
    with warm_client(cores) as client:
        qcmb_dask.compute(mbin, client, progress=False, cache=False)  # warm-up: worker imports
        warm = [timed(lambda: qcmb_dask.compute(mbin, client, progress=False, cache=False)) for _ in range(repeat)]

    print(f"QCManyBody sequential             median {median(sequential):7.2f} s  {sequential}")
    print(f"qcmb_dask, embedded cluster (cold) median {median(cold):7.2f} s  (includes starting {cores} workers)")
    print(f"qcmb_dask, second call (cluster kept) median {median(second):7.2f} s")
    print(f"qcmb_dask, warm cluster            median {median(warm):7.2f} s")
    print(
        f"speedup cold: {median(sequential) / median(cold):.2f}x   warm: {median(sequential) / median(warm):.2f}x   "
        f"(limit {cores:.1f}x)"
    )


if __name__ == "__main__":
    main()
