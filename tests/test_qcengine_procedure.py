"""The QCEngine procedure ``qcmb_dask``: registered once QCEngine is imported, QCEngine's ``qcmanybody`` answer."""

import subprocess
import sys

import pytest

import qcmb_dask  # noqa: F401  (the import that makes QCEngine learn the procedure)

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
