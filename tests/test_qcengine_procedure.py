"""The QCEngine procedure ``qcmb_dask``: registered once QCEngine is imported, QCEngine's ``qcmanybody`` answer."""

import subprocess
import sys

import pytest

import qcmb_dask  # the import that makes QCEngine learn the procedures

from .conftest import NOCP, assert_same_result, mbe_input


@pytest.mark.parametrize("first, second", [("qcmb_dask", "qcengine"), ("qcengine", "qcmb_dask")])
def test_the_procedure_is_registered_whichever_is_imported_first(first, second):
    code = f"import {first}, {second}\nprint('qcmb_dask' in qcengine.list_all_procedures())\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "True" and "could not be registered" not in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("driver", ["energy", "gradient"])
def test_qcengine_compute_with_qcmb_dask_gives_the_qcmanybody_procedures_answer(driver):
    import qcengine

    data = mbe_input(3, driver=driver, keywords={**NOCP, "return_total_data": True})
    ours = qcengine.compute(data, "qcmb_dask", raise_error=True)
    theirs = qcengine.compute(data, "qcmanybody", raise_error=True)
    assert_same_result(ours, theirs)
    assert ours.extras["qcmb_dask"]["run_id"]  # made by qcmb_dask.compute, with its record


@pytest.mark.slow
def test_qcengine_optimizes_a_many_body_specification_through_qcmb_dask(tmp_path):
    import dask
    import qcengine
    from qcelemental.models.v2 import Molecule

    from .test_optimize import optimization_input

    data = optimization_input(2, "nocp")
    specification = {**data["specification"], "driver": "gradient"}
    request = {
        "initial_molecule": Molecule(**data["molecule"]),
        "specification": {"keywords": {"convergence_set": "GAU"}, "specification": specification},
    }
    with dask.config.set({"qcmb_dask.cache": str(tmp_path)}):
        result = qcengine.compute(request, "qcmb_dask_geometric", raise_error=True)
        direct = qcmb_dask.optimize(data, progress=False)  # every point now read from the store
    assert result.provenance.creator == "qcmb_dask"
    assert result.properties.optimization_iterations == len(direct.trajectory_results)
    assert result.trajectory_results == []  # QCElemental's default protocol, the caller's: no trajectory kept
    assert result.properties.return_energy == direct.properties.return_energy
    assert all(point["computed"] == 0 for point in direct.extras["qcmb_dask"]["points"])
