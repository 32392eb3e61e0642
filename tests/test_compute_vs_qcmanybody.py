"""qcmb_dask.compute gives QCManyBody's sequential answer: every driver, BSSE treatment and level layout.

Real PySCF on water clusters; the reference is qcmanybody's own ManyBodyComputer on the same input.
"""

import pytest
from qcmanybody.models.v2 import ManyBodyInput

import qcmb_dask

from .conftest import assert_same_result, mbe_input, qcmanybody_reference

MULTI = {"mp2": ("mp2", "sto-3g"), "hf": ("hf", "sto-3g")}

ENERGY_CASES = {
    "cp": mbe_input(3, keywords={"bsse_type": "cp"}),
    "nocp": mbe_input(3, keywords={"bsse_type": "nocp"}),
    "vmfc": mbe_input(3, keywords={"bsse_type": "vmfc"}),
    "cp-nocp-vmfc": mbe_input(3, keywords={"bsse_type": ["cp", "nocp", "vmfc"]}),
    "cp-rtd": mbe_input(3, keywords={"bsse_type": "cp", "return_total_data": True}),
    "nocp-cp-max2": mbe_input(3, keywords={"bsse_type": ["nocp", "cp"], "max_nbody": 2}),
    "cp-sio": mbe_input(3, keywords={"bsse_type": "cp", "supersystem_ie_only": True}),
    "multilevel": mbe_input(3, keywords={"bsse_type": ["cp", "nocp"], "levels": {1: "mp2", 2: "hf"}}, specs=MULTI),
    "multilevel-vmfc-rtd": mbe_input(
        3, keywords={"bsse_type": ["vmfc", "cp"], "levels": {1: "mp2", 3: "hf"}, "return_total_data": True}, specs=MULTI
    ),
    "supersystem": mbe_input(
        3,
        keywords={"bsse_type": "nocp", "levels": {1: "mp2", 2: "hf", "supersystem": "big"}},
        specs={**MULTI, "big": ("hf", "6-31g")},
    ),
}

DERIVATIVE_CASES = {
    "gradient-cp": mbe_input(3, driver="gradient", keywords={"bsse_type": "cp"}),
    "gradient-all-max2": mbe_input(
        3, driver="gradient", keywords={"bsse_type": ["nocp", "cp", "vmfc"], "max_nbody": 2}
    ),
    "gradient-multilevel-ie": mbe_input(
        3,
        driver="gradient",
        keywords={"bsse_type": ["cp"], "levels": {1: "mp2", 2: "hf"}, "return_total_data": False},
        specs=MULTI,
    ),
    "hessian-nocp-dimer": mbe_input(2, driver="hessian", keywords={"bsse_type": "nocp"}),
    "hessian-cp-vmfc-dimer": mbe_input(2, driver="hessian", keywords={"bsse_type": ["cp", "vmfc"]}),
}


@pytest.fixture(scope="module")
def references():
    cache = {}

    def get(name, data):
        if name not in cache:
            cache[name] = qcmanybody_reference(data)
        return cache[name]

    return get


@pytest.mark.parametrize("case", sorted(ENERGY_CASES))
def test_energy_sync_equals_qcmanybody(case, references):
    ours = qcmb_dask.compute(ENERGY_CASES[case], "sync", progress=False)
    assert_same_result(ours, references(case, ENERGY_CASES[case]))


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(DERIVATIVE_CASES))
def test_derivatives_sync_equal_qcmanybody(case, references):
    ours = qcmb_dask.compute(DERIVATIVE_CASES[case], "sync", progress=False)
    assert_same_result(ours, references(case, DERIVATIVE_CASES[case]))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["cp-nocp-vmfc", "supersystem", "multilevel-vmfc-rtd", "cp-sio"])
def test_energy_on_worker_processes_equals_qcmanybody(case, references, local_client):
    ours = qcmb_dask.compute(ENERGY_CASES[case], local_client, progress=False)
    assert_same_result(ours, references(case, ENERGY_CASES[case]))


@pytest.mark.slow
@pytest.mark.parametrize("case", ["gradient-all-max2", "hessian-cp-vmfc-dimer"])
def test_derivatives_on_worker_processes_equal_qcmanybody(case, references, local_client):
    ours = qcmb_dask.compute(DERIVATIVE_CASES[case], local_client, progress=False)
    assert_same_result(ours, references(case, DERIVATIVE_CASES[case]))


@pytest.mark.slow
def test_embedded_local_cluster_is_the_default_and_matches(references, capsys):
    data = ENERGY_CASES["cp-nocp-vmfc"]
    ours = qcmb_dask.compute(data, n_workers=2, progress=True)
    assert_same_result(ours, references("cp-nocp-vmfc", data))
    err = capsys.readouterr().err
    assert "Dask dashboard at http" in err
    assert "3-body result ready" in err


@pytest.mark.slow
@pytest.mark.parametrize("driver", ["energy", "gradient"])
def test_v1_input_gives_v1_result_equal_to_qcmanybody_v1(driver):
    from qcmanybody.models.v1 import ManyBodyResult as ManyBodyResultV1

    v1 = ManyBodyInput(**mbe_input(2, driver=driver, keywords={"bsse_type": ["cp", "nocp"]})).convert_v(1)
    ours = qcmb_dask.compute(v1, "sync", progress=False)
    assert isinstance(ours, ManyBodyResultV1)
    assert_same_result(ours, qcmanybody_reference(v1))


def test_cluster_results_all_and_atomic_stdout_protocols(references):
    data = mbe_input(2, keywords={"bsse_type": ["cp", "nocp"]}, protocols={"cluster_results": "all"})
    for spec in data["specification"]["specification"].values():
        spec["protocols"] = {"stdout": False}
    ours = qcmb_dask.compute(data, "sync", progress=False)
    ref = qcmanybody_reference(data)
    assert_same_result(ours, ref)
    assert len(ours.cluster_results) == 5
    assert all(r.stdout is None for r in ours.cluster_results.values())


def test_cluster_results_none_by_default():
    ours = qcmb_dask.compute(mbe_input(2, keywords={"bsse_type": "nocp"}), "sync", progress=False)
    assert ours.cluster_results == {}
    assert len(ours.cluster_properties) == 3


def test_manybodycomputer_drop_in(references):
    data = ENERGY_CASES["cp"]
    ours = qcmb_dask.ManyBodyComputer.from_manybodyinput(ManyBodyInput(**data), cluster="sync", progress=False)
    assert_same_result(ours, references("cp", data))


def test_by_level_ordering_gives_the_same_answer(references):
    data = ENERGY_CASES["cp-nocp-vmfc"]
    ours = qcmb_dask.compute(data, "sync", ordering="by_level", progress=False)
    assert_same_result(ours, references("cp-nocp-vmfc", data))


def test_input_file_gives_v2_result(tmp_path):
    import json

    path = tmp_path / "dimer.json"
    path.write_text(json.dumps(mbe_input(2, keywords={"bsse_type": "cp"})))
    result = qcmb_dask.compute(path, "sync", progress=False)
    assert result.schema_version == 2
    assert result.properties.cp_corrected_interaction_energy < 0
