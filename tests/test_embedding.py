"""Embedding point charges (EE-MBE) with PySCF, a pip-installable program.

QCManyBody's own computer accepts embedding charges only for Psi4, so the reference here is its loop
written out with PySCF: ManyBodyCore.iterate_molecules -> qcengine.compute -> analyze -> get_results.
"""

import pytest
import qcengine
from qcelemental.models.v2 import AtomicInput
from qcmanybody.models.v2 import ManyBodyInput
from qcmanybody.v2 import ManyBodyComputer

import qcmb_dask
from qcmb_dask.qcmanybody_adapter import atomic_specifications

from .conftest import assert_same_result, mbe_input

TIP3P = [-0.834, 0.417, 0.417]


def embedded_input(driver="energy"):
    keywords = {"bsse_type": "nocp", "return_total_data": True, "embedding_charges": {i: TIP3P for i in (1, 2, 3)}}
    return mbe_input(3, driver=driver, keywords=keywords, specs={"(auto)": ("hf", "6-31g")})


def qcmanybody_loop_with_pyscf(data):
    computer = ManyBodyComputer.from_manybodyinput(ManyBodyInput(**data), build_tasks=False)
    specs = atomic_specifications(computer)
    component_properties = {}
    for mc, label, mol in computer.qcmb_core.iterate_molecules():
        result = qcengine.compute(
            AtomicInput(molecule=mol, specification=specs[mc]["specification"]), "pyscf", raise_error=True
        )
        component_properties[label] = {
            p: getattr(result.properties, f"return_{p}")
            for p in ("energy", "gradient", "hessian")
            if getattr(result.properties, f"return_{p}") is not None
        }
    analyzed = computer.qcmb_core.analyze(component_properties)
    analyzed["nbody_number"] = len(component_properties)
    return computer.get_results(external_results=analyzed, component_results={})


@pytest.mark.slow
@pytest.mark.parametrize("driver", ["energy", "gradient"])
def test_embedding_sync_equals_qcmanybody_loop(embedding_enabled, driver):
    data = embedded_input(driver)
    ours = qcmb_dask.compute(data, "sync", progress=False)
    assert_same_result(ours, qcmanybody_loop_with_pyscf(data))
    plain = qcmb_dask.compute(
        mbe_input(
            3,
            driver=driver,
            keywords={"bsse_type": "nocp", "return_total_data": True},
            specs={"(auto)": ("hf", "6-31g")},
        ),
        "sync",
        progress=False,
    )
    assert (
        abs(
            ours.properties.nocp_corrected_total_energy_through_1_body
            - plain.properties.nocp_corrected_total_energy_through_1_body
        )
        > 1e-3
    )


@pytest.mark.slow
def test_embedding_on_worker_processes(embedding_enabled):
    data = embedded_input()
    ours = qcmb_dask.compute(data, n_workers=2, progress=False)
    assert_same_result(ours, qcmanybody_loop_with_pyscf(data))
