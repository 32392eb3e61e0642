"""NWChem, a second real program, through QCEngine's own harness: the graph equals QCManyBody with it."""

import pytest

import qcmb_dask

from .conftest import assert_same_result, mbe_input, qcmanybody_reference, requires_nwchem, water_cluster

pytestmark = [requires_nwchem, pytest.mark.nwchem, pytest.mark.slow]


def nwchem_input(driver):
    data = mbe_input(2, driver=driver, keywords={"bsse_type": ["cp", "nocp"]}, program="nwchem")
    # No automatic symmetry: QCEngine's NWChem harness can return gradients of a symmetric
    # fragment in NWChem's rotated frame (see test_pyscf_harness's NWChem comparison).
    data["molecule"] = water_cluster(2, fix_symmetry="c1")
    return data


@pytest.mark.parametrize("driver", ["energy", "gradient"])
def test_nwchem_mbe_sync_equals_qcmanybody(driver):
    data = nwchem_input(driver)
    assert_same_result(qcmb_dask.compute(data, "sync", progress=False), qcmanybody_reference(data))


def test_nwchem_mbe_on_worker_processes_equals_qcmanybody(local_client):
    data = nwchem_input("energy")
    assert_same_result(qcmb_dask.compute(data, local_client, progress=False), qcmanybody_reference(data))


def test_nwchem_and_pyscf_give_the_same_interaction_energy():
    nwchem = qcmb_dask.compute(nwchem_input("energy"), "sync", progress=False)
    pyscf_data = nwchem_input("energy")
    for spec in pyscf_data["specification"]["specification"].values():
        spec["program"] = "pyscf"
    pyscf = qcmb_dask.compute(pyscf_data, "sync", progress=False)
    assert nwchem.properties.cp_corrected_interaction_energy == pytest.approx(
        pyscf.properties.cp_corrected_interaction_energy, abs=1e-7
    )
