"""Makespan against the lower bound max(total work / workers, longest fragment), with and without priorities.

Workload with very different fragment costs: multi-level nocp on (H2O)6, CCSD(T)/aug-cc-pVDZ
monomers, MP2/cc-pVDZ dimers, HF/STO-3G trimers (68 calculations). Fragment durations are measured
inside each fragment in the same run, so the bound and the makespan come from one run.

    python benchmarks/makespan.py           # 3 repetitions each way
    python benchmarks/makespan.py --quick   # (H2O)4 with cheaper methods, for CI
    python benchmarks/makespan.py --waters 10   # 240 calculations, for a 16-core machine
"""

from __future__ import annotations

import time

from common import median, parser, warm_client
from systems import mbe_input

import qcmb_dask
from qcmb_dask.clusters.resources import machine_cores
from qcmb_dask.graph import build


def workload(quick: bool, waters: int = 6) -> dict:
    specs = {
        "ccsd(t)": ("ccsd(t)", "cc-pvdz" if quick else "aug-cc-pvdz"),
        "mp2": ("mp2", "sto-3g" if quick else "cc-pvdz"),
        "hf": ("hf", "sto-3g"),
    }
    return mbe_input(4 if quick else waters, 3, "nocp", levels={1: "ccsd(t)", 2: "mp2", 3: "hf"}, specs=specs)


def run_once(client, data, prioritize: bool, workers: int):
    start = time.perf_counter()
    plan = qcmb_dask.plan(data)
    graph = build(plan, task_config={"ncores": 1}, prioritize=prioritize)
    futures = client.compute([graph.result, *graph.fragments.values()])
    client.gather(futures[0])
    makespan = time.perf_counter() - start
    durations = [out.wall_time for out in client.gather(futures[1:])]
    keys = [f.key for f in futures]
    del futures
    release(client, keys)
    bound = max(sum(durations) / workers, max(durations))
    return makespan, bound


def release(client, keys) -> None:
    """Wait until the scheduler forgot the run's results (their futures are dropped): the next run has
    the same keys and must compute them again, not find them in memory."""
    deadline = time.time() + 60
    while time.time() < deadline and set(keys) & set(client.who_has()):
        time.sleep(0.05)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--waters", type=int, default=6, help="cluster size (more waters: more, and more varied, work)")
    args = p.parse_args()
    repeat = args.repeat or (1 if args.quick else 3)
    data = workload(args.quick, args.waters)
    workers = machine_cores()
    plan = qcmb_dask.plan(data)
    print(plan)
    with warm_client(workers) as client:
        run_once(client, data, True, workers)  # warm-up: imports and PySCF set-up on every worker
        results = {True: [], False: []}
        for _ in range(repeat):  # interleaved, so that drifts in machine load hit both alike
            for prioritize in (True, False):
                results[prioritize].append(run_once(client, data, prioritize, workers))
    for prioritize, runs in results.items():
        ratios = [m / b for m, b in runs]
        print(
            f"{'with' if prioritize else 'without'} priorities: makespan median {median([m for m, _ in runs]):6.2f} s, "
            f"lower bound median {median([b for _, b in runs]):6.2f} s, makespan/bound median {median(ratios):.3f} "
            f"(runs: {', '.join(f'{r:.3f}' for r in ratios)})"
        )


if __name__ == "__main__":
    main()
