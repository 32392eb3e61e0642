"""Makespan against the lower bound max(total work / workers, longest fragment), and when each n-body level's
result arrives, for three orders: qcmb_dask's (cheap low levels first where the cost model says that costs the
makespan under 2 %, then longest first), longest first alone, and none (Dask's own order).

Workloads: "multilevel" (default) has very different fragment costs: nocp on (H2O)6, CCSD(T)/aug-cc-pVDZ
monomers, MP2/cc-pVDZ dimers, HF/STO-3G trimers (68 calculations). "uniform": one method for every level,
HF/6-31G CP and NoCP on (H2O)6 to 3-body (as examples/water-hexamer.json), where longest-first runs the trimers first
and the 2-body result comes last. Fragment durations are measured inside each fragment in the same run, so
the bound and the makespan come from one run.

    python benchmarks/makespan.py                       # 3 repetitions each way
    python benchmarks/makespan.py --workload uniform
    python benchmarks/makespan.py --quick               # (H2O)4 with cheaper methods, for CI
    python benchmarks/makespan.py --waters 10           # 240 calculations, for a 16-core machine
"""

from __future__ import annotations

import time

from common import median, parser, warm_client
from systems import mbe_input

import qcmb_dask
from qcmb_dask.clusters.resources import machine_cores
from qcmb_dask.graph import build
from qcmb_dask.planning import priorities


def workload(quick: bool, waters: int = 6, kind: str = "multilevel") -> dict:
    if kind == "uniform":
        basis = "sto-3g" if quick else "6-31g"
        return mbe_input(4 if quick else waters, 3, ["cp", "nocp"], method="hf", basis=basis)
    specs = {
        "ccsd(t)": ("ccsd(t)", "cc-pvdz" if quick else "aug-cc-pvdz"),
        "mp2": ("mp2", "sto-3g" if quick else "cc-pvdz"),
        "hf": ("hf", "sto-3g"),
    }
    return mbe_input(4 if quick else waters, 3, "nocp", levels={1: "ccsd(t)", 2: "mp2", 3: "hf"}, specs=specs)


#: order -> (prioritize, the early-levels tolerance): qcmb_dask's, longest first alone, Dask's
ORDERS = {"qcmb_dask": (True, priorities.TOLERANCE), "longest first": (True, -1.0), "none": (False, 0.0)}


def run_once(client, data, order: str, workers: int):
    """(makespan, bound, {level: seconds until its result arrived})."""
    prioritize, tolerance = ORDERS[order]
    start = time.perf_counter()
    plan = qcmb_dask.plan(data)
    before, priorities.TOLERANCE = priorities.TOLERANCE, tolerance
    try:
        graph = build(plan, task_config={"ncores": 1}, prioritize=prioritize, workers=workers)
    finally:
        priorities.TOLERANCE = before
    levels = sorted(graph.levels)
    futures = client.compute([graph.result, *[graph.levels[n] for n in levels], *graph.fragments.values()])
    arrived = _arrivals(dict(zip(levels, futures[1 : 1 + len(levels)])), start)
    client.gather(futures[0])
    makespan = time.perf_counter() - start
    durations = [out.wall_time for out in client.gather(futures[1 + len(levels) :])]
    keys = [f.key for f in futures]
    del futures
    release(client, keys)
    bound = max(sum(durations) / workers, max(durations))
    return makespan, bound, arrived


def _arrivals(level_futures: dict, start: float) -> dict:
    """level -> seconds from ``start`` until its result arrived (references dropped on return, so that
    :func:`release` can see the results forgotten)."""
    from distributed import as_completed

    level_of = {future.key: level for level, future in level_futures.items()}
    return {level_of[f.key]: time.perf_counter() - start for f in as_completed(list(level_futures.values()))}


def release(client, keys) -> None:
    """Wait until the scheduler forgot the run's results (their futures are dropped): the next run has
    the same keys and must compute them again, not find them in memory."""
    deadline = time.time() + 60
    while time.time() < deadline and set(keys) & set(client.who_has()):
        time.sleep(0.05)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--waters", type=int, default=6, help="cluster size (more waters: more, and more varied, work)")
    p.add_argument("--workload", choices=["multilevel", "uniform"], default="multilevel")
    args = p.parse_args()
    repeat = args.repeat or (1 if args.quick else 3)
    data = workload(args.quick, args.waters, args.workload)
    workers = machine_cores()
    plan = qcmb_dask.plan(data)
    print(plan)
    with warm_client(workers) as client:
        run_once(client, data, "qcmb_dask", workers)  # warm-up: imports and PySCF set-up on every worker
        results = {order: [] for order in ORDERS}
        for _ in range(repeat):  # interleaved, so that drifts in machine load hit all alike
            for order in ORDERS:
                results[order].append(run_once(client, data, order, workers))
    for order, runs in results.items():
        ratios = [m / b for m, b, _ in runs]
        makespan = median([m for m, _, _ in runs])
        arrivals = ", ".join(
            f"{n}-body at {100 * median([a[n] / m for m, _, a in runs]):.0f} %" for n in sorted(runs[0][2])
        )
        bound = median([b for _, b, _ in runs])
        print(
            f"{order:>13}: makespan median {makespan:6.2f} s, lower bound median {bound:6.2f} "
            f"s, makespan/bound median {median(ratios):.3f} (runs: {', '.join(f'{r:.3f}' for r in ratios)}); "
            f"levels arrive at (share of the makespan): {arrivals}"
        )


if __name__ == "__main__":
    main()
