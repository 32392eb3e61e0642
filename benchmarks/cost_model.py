"""How well estimates predict measured fragment durations: the cost model alone, and refined by an earlier run.

Priorities (longest first), plan()'s "roughly ... on one core" and the ETA all come from the estimates.
A training run on one water cluster writes its measurements to a store's cost history
(qcmb_dask.cost_history); a test run on another cluster, in a fresh store that holds only that history,
is then planned twice (the model alone; the model refined by the history) and computed, one fragment at
a time on one core, so each fragment's duration is its own. Printed per program:
- total: estimated / measured core-seconds over the whole run (1 is exact);
- typical error: the median over fragments of max(est/measured, measured/est) (1 is exact);
- rank agreement: Kendall's tau between estimates and durations over pairs of fragments (1: the same order,
  which is all priorities need).

Workload: multi-level nocp, CCSD(T)/cc-pVDZ monomers, MP2/cc-pVDZ dimers, HF/6-31G trimers.

    python benchmarks/cost_model.py           # trained on (H2O)3, tested on (H2O)4; PySCF, and NWChem when installed
    python benchmarks/cost_model.py --quick   # HF/MP2/CCSD in STO-3G, PySCF only, for CI
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

from common import median, parser
from systems import mbe_input, water_cluster

import qcmb_dask
from qcmb_dask.planning import cost_history


def workload(nwaters: int, program: str, quick: bool, seed: int) -> dict:
    big = "sto-3g" if quick else "cc-pvdz"
    specs = {
        "ccsd(t)": ("ccsd" if quick else "ccsd(t)", big),
        "mp2": ("mp2", big),
        "hf": ("hf", "sto-3g" if quick else "6-31g"),
    }
    data = mbe_input(nwaters, 3, "nocp", program=program, levels={1: "ccsd(t)", 2: "mp2", 3: "hf"}, specs=specs)
    data["molecule"] = water_cluster(nwaters, seed=seed)
    return data


def measured_seconds(data: dict, store: Path) -> dict[str, float]:
    """label -> seconds, one fragment at a time on one core (cluster='sync')."""
    qcmb_dask.compute(data, cluster="sync", threads_per_task=1, cache=store, progress=False)
    return {r["label"]: r["stop"] - r["start"] for r in qcmb_dask.timeline() if r["ok"] and not r["from_store"]}


def kendall_tau(x: list[float], y: list[float]) -> float:
    concordant = discordant = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            s = (x[i] - x[j]) * (y[i] - y[j])
            concordant += s > 0
            discordant += s < 0
    return (concordant - discordant) / max(1, concordant + discordant)


def scores(estimates: dict[str, float], seconds: dict[str, float]) -> dict[str, float]:
    labels = sorted(seconds)
    est, real = [estimates[label] for label in labels], [seconds[label] for label in labels]
    return {
        "total": sum(est) / sum(real),
        "typical": median([math.exp(abs(math.log(e / r))) for e, r in zip(est, real)]),
        "tau": kendall_tau(est, real),
    }


def compare(program: str, quick: bool, scratch: Path) -> None:
    train, test = (workload(n, program, quick, seed) for n, seed in ((3, 11), (4, 7)))
    measured_seconds(train, scratch / f"{program}-train")
    fresh = scratch / f"{program}-test"
    fresh.mkdir()
    shutil.copy(scratch / f"{program}-train" / cost_history.FILE, fresh / cost_history.FILE)
    model = qcmb_dask.plan(test, cache=False)
    refined = qcmb_dask.plan(test, cache=fresh)  # read before the test run adds its own measurements
    seconds = measured_seconds(test, fresh)
    for name, plan in (("model alone", model), ("model x measured", refined)):
        s = scores({t.label: t.cost for t in plan}, seconds)
        print(
            f"  {program:7} {name:17} total est/measured {s['total']:6.2f}   typical error x{s['typical']:5.2f}   "
            f"rank agreement (Kendall tau) {s['tau']:5.2f}"
        )
    for mc, (factor, n, what) in refined.cost_factors.items():
        print(f"      {mc}: x {factor:.3g} from {n} {what}")
    print(f"      {len(seconds)} calculations measured, {sum(seconds.values()):.1f} s")


def main() -> None:
    args = parser(__doc__).parse_args()
    programs = ["pyscf"]
    if not args.quick and shutil.which("nwchem"):
        programs.append("nwchem")
    print("Estimates against measured durations, test run on (H2O)4 after a training run on another (H2O)3:")
    with tempfile.TemporaryDirectory() as scratch:
        for program in programs:
            compare(program, args.quick, Path(scratch))


if __name__ == "__main__":
    main()
