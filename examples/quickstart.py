"""Run the water-trimer MBE (HF/6-31G, CP and NoCP, up to 3-body) on an embedded Dask cluster.

    python examples/quickstart.py [INPUT.json]

Prints the plan, the dashboard link, each n-body level as it completes, and the final table.
"""

import sys
from pathlib import Path

import qcmb_dask

HARTREE_TO_KCAL = 627.5094740631


def main(path: str) -> None:
    print(qcmb_dask.plan(path), "\n")
    result = qcmb_dask.compute(path, progress=True)  # embedded LocalCluster sized to this machine
    print()
    print(result.stdout)
    for bsse in result.input_data.specification.keywords.bsse_type:
        ie = getattr(result.properties, f"{bsse.value}_corrected_interaction_energy")
        print(f"{bsse.value.upper():>5} interaction energy: {ie:.10f} Eh = {ie * HARTREE_TO_KCAL:.4f} kcal/mol")


if __name__ == "__main__":  # required: Dask starts worker processes that re-import this file
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).with_name("water-trimer.json")))
