"""Run the water-trimer MBE (HF/6-31G, CP and NoCP, up to 3-body): on the embedded Dask cluster, or in this
process where the plan is too small to be worth starting workers (the output says which).

    python examples/quickstart.py [INPUT.json]

Prints the plan, the dashboard link, each n-body level as it completes, and the final table.
"""

import sys
from pathlib import Path

import qcmb_dask
from qcmb_dask.qcmanybody_adapter import hartree_to_kcal


def main(path: str) -> None:
    print(qcmb_dask.plan(path), "\n")
    result = qcmb_dask.compute(path, progress=True)  # the embedded cluster, or this process for a small plan
    print()
    print(result.stdout)
    for bsse in result.input_data.specification.keywords.bsse_type:
        ie = getattr(result.properties, f"{bsse.value}_corrected_interaction_energy")
        print(f"{bsse.value.upper():>5} interaction energy: {ie:.10f} Eh = {ie * hartree_to_kcal():.4f} kcal/mol")


if __name__ == "__main__":  # required: Dask starts worker processes that re-import this file
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).with_name("water-trimer.json")))
