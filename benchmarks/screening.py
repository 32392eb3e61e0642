"""Distance-screened expansions: calculations kept and the error against the full expansion, per cutoff pair.

1. (H2O)16 and (H2O)20, HF/STO-3G, 3-body nocp: the full expansion is computed once into a result store; each
   cutoff pair is then a screened run that reads its calculations from that store (a tighter run computes
   nothing). Per cutoff pair: calculations kept, the error of the total energy and of the 3-body contribution
   against the full expansion (kcal/mol), and the run's own estimate of what it dropped.
2. (H2O)64, 3-body nocp with cutoffs, HF/STO-3G on this machine's cores, end to end: counts and times.
3. (H2O)128, 3-body nocp with cutoffs: planned only, counts and planning time.

The clusters are waters on a cubic grid 3.1 A apart (about liquid water's O-O distance), randomly rotated
(``systems.water_cluster``, seeded): not minima, but every water has neighbours at hydrogen-bond distances.

    python benchmarks/screening.py           # all three parts
    python benchmarks/screening.py --quick   # (H2O)8 and a planned (H2O)32, for CI
"""

from __future__ import annotations

import tempfile
import time

from common import parser
from systems import mbe_input, water_cluster

import qcmb_dask
from qcmb_dask.qcmanybody_adapter import hartree_to_kcal

SPACING = 3.1
#: the suggestion the README documents, then tighter pairs
CUTOFF_PAIRS = [{2: 12.0, 3: 8.0}, {2: 9.0, 3: 6.0}, {2: 7.0, 3: 5.0}, {2: 6.0, 3: 4.5}, {2: 5.0, 3: 3.5}]


def cluster_input(nwaters: int) -> dict:
    data = mbe_input(nwaters, 3, "nocp")
    data["molecule"] = water_cluster(nwaters, spacing=SPACING)
    data["specification"]["keywords"]["return_total_data"] = True
    return data


def body_energies(result) -> dict[int, float]:
    """n -> total energy through n-body (Eh), from QCManyBody's result."""
    props = result.properties
    return {n: getattr(props, f"nocp_corrected_total_energy_through_{n}_body") for n in (1, 2, 3)}


def errors_table(nwaters: int, client, pairs) -> None:
    data = cluster_input(nwaters)
    kcal = hartree_to_kcal()
    with tempfile.TemporaryDirectory() as store:
        began = time.perf_counter()
        full = qcmb_dask.compute(data, cluster=client, cache=store, progress=False)
        full_s = time.perf_counter() - began
        ntotal = full.extras["qcmb_dask"]["computed"]
        reference = body_energies(full)
        three_body = reference[3] - reference[2]
        print(f"(H2O){nwaters}, HF/STO-3G, 3-body nocp: {ntotal} calculations, full expansion {full_s:.0f} s")
        print(f"  3-body contribution of the full expansion: {three_body * kcal:.4f} kcal/mol")
        print("  | cutoffs (A) 2-body / 3-body | calculations kept | error, total (kcal/mol) | error, 3-body term | "
              "dropped 2-body / 3-body energy | its estimate 2-body / 3-body |")  # fmt: skip
        for cutoffs in pairs:
            screened = qcmb_dask.compute(data, cluster=client, cache=store, screening=cutoffs, progress=False)
            record = screened.extras["qcmb_dask"]
            assert record["computed"] == 0, "a screened run needs no calculation the full one did not make"
            ours = body_energies(screened)
            dropped = ((reference[2] - ours[2]) * kcal, (three_body - (ours[3] - ours[2])) * kcal)
            estimate = record["screening"]["dropped_energy_estimate"]
            shown = " / ".join(_kcal(estimate.get(order, {}).get("hartree"), kcal) for order in ("2", "3"))
            print(
                f"  | {cutoffs[2]:g} / {cutoffs[3]:g} | {record['from_store']} of {ntotal} | "
                f"{(ours[3] - reference[3]) * kcal:+.4f} | {((ours[3] - ours[2]) - three_body) * kcal:+.4f} | "
                f"{dropped[0]:+.4f} / {dropped[1]:+.4f} | {shown} |"
            )


def _kcal(hartree, kcal: float) -> str:
    return "-" if hartree is None else f"{hartree * kcal:+.4f}"


def end_to_end(nwaters: int, cutoffs: dict, client) -> None:
    data = cluster_input(nwaters)
    began = time.perf_counter()
    plan = qcmb_dask.plan(data, screening=cutoffs, cache=False)
    planned = time.perf_counter() - began
    counts = plan.screening.counts()
    print(f"(H2O){nwaters} 3-body nocp, cutoffs {cutoffs}: planned in {planned:.2f} s")
    for order, (kept, full) in counts.items():
        print(f"  {order}-mers kept {kept:,} of {full:,}")
    print(f"  calculations: {len(plan):,} (the full expansion: {sum(full for _, full in counts.values()):,})")
    if client is None:
        return
    began = time.perf_counter()
    result = qcmb_dask.compute(data, cluster=client, screening=cutoffs, cache=False, progress=False)
    wall = time.perf_counter() - began
    estimate = result.extras["qcmb_dask"]["screening"]["dropped_energy_estimate"]
    print(f"  computed end to end in {wall:.0f} s on {len(client.scheduler_info()['workers'])} workers")
    for order, value in estimate.items():
        shown = f"{value['hartree'] * hartree_to_kcal():+.4f} kcal/mol" if value.get("hartree") is not None else "-"
        print(f"  estimate of the dropped {order}-body energy: {shown} ({value.get('how', value.get('why'))})")


def main() -> None:
    from common import warm_client

    from qcmb_dask.clusters.resources import machine_cores

    args = parser(__doc__).parse_args()
    with warm_client(machine_cores()) as client:
        if args.quick:
            errors_table(8, client, CUTOFF_PAIRS[:2])
            end_to_end(32, {2: 6.0, 3: 4.5}, None)
            return
        for nwaters in (16, 20):
            errors_table(nwaters, client, CUTOFF_PAIRS)
        end_to_end(64, {2: 6.0, 3: 4.5}, client)
    end_to_end(128, {2: 6.0, 3: 4.5}, None)


if __name__ == "__main__":
    main()
