"""k-body-truncated level results, progress callbacks, user harnesses on workers, errors naming fragments."""

import pytest

import qcmb_dask
from qcmb_dask.errors import FragmentError, FragmentsFailed

from .conftest import mbe_input
from .fake_programs import DimersFailHarness


@pytest.mark.parametrize(
    "keywords",
    [
        {"bsse_type": ["cp", "nocp", "vmfc"]},
        {"bsse_type": ["nocp", "cp"], "return_total_data": True},
    ],
)
def test_level_results_equal_the_full_results_through_each_level(keywords):
    seen = []
    result = qcmb_dask.compute(mbe_input(3, keywords=keywords), "sync", progress=seen.append)
    assert [level.nbody for level in seen] == [1, 2, 3]
    props = result.properties.model_dump()
    for level in seen:
        for bt in keywords["bsse_type"]:
            key = f"{bt}_corrected_interaction_energy_through_{level.nbody}_body"
            assert level.properties[key] == pytest.approx(props[key], abs=1e-12)
            assert level.interaction_energy(bt) == pytest.approx(props[key], abs=1e-12)


def test_multilevel_truncations_use_each_levels_own_model_chemistry():
    data = mbe_input(
        3,
        keywords={"bsse_type": "nocp", "levels": {1: "mp2", 2: "hf"}},
        specs={"mp2": ("mp2", "sto-3g"), "hf": ("hf", "sto-3g")},
    )
    seen = []
    result = qcmb_dask.compute(data, "sync", progress=seen.append)
    assert [level.ncalculations for level in seen] == [3, len(qcmb_dask.plan(data))]  # MP2 monomers; then all 9
    assert seen[-1].properties["nocp_corrected_total_energy_through_2_body"] == pytest.approx(
        result.properties.nocp_corrected_total_energy_through_2_body, abs=1e-12
    )


@pytest.mark.slow
def test_levels_arrive_on_a_distributed_cluster_before_the_result(local_client):
    seen = []
    result = qcmb_dask.compute(mbe_input(3, keywords={"bsse_type": "cp"}), local_client, progress=seen.append)
    assert [level.nbody for level in seen] == [1, 2, 3]  # in order, even when two finish together
    last = max(seen, key=lambda level: level.nbody)
    assert last.interaction_energy("cp") == pytest.approx(result.properties.cp_corrected_interaction_energy, abs=1e-12)


def failing_input():
    return mbe_input(3, keywords={"bsse_type": "nocp"}, program="dimers-fail")


def test_failed_fragment_names_label_level_program_method_basis_and_error():
    with pytest.raises(FragmentsFailed) as info:
        qcmb_dask.compute(failing_input(), "sync", harnesses=[DimersFailHarness()], progress=False)
    assert len(info.value.failures) == 3  # every dimer, not just the first to fail
    err = info.value.failures[0]
    assert isinstance(err, FragmentError)
    assert err.nbody == 2
    assert (err.program, err.method, err.basis, err.error_type) == ("dimers-fail", "hf", "sto-3g", "convergence_error")
    assert err.label in str(err)
    assert any(pair in err.label for pair in ("[1, 2]", "[1, 3]", "[2, 3]"))
    assert "injected: this dimer never converges" in str(err)
    assert all(f.label in str(info.value) for f in info.value.failures)


@pytest.mark.slow
def test_user_harness_is_registered_on_worker_processes_and_errors_travel(local_client):
    """The worker processes never imported the test module's harness: the plugin registers it there."""
    with pytest.raises(FragmentsFailed, match=r"2-body, dimers-fail hf/sto-3g\) failed with convergence_error"):
        qcmb_dask.compute(failing_input(), local_client, harnesses=[DimersFailHarness()], progress=False)
    ok = qcmb_dask.compute(
        mbe_input(2, keywords={"bsse_type": "nocp", "max_nbody": 1}, program="dimers-fail"),
        local_client,
        harnesses=[DimersFailHarness()],
        progress=False,
    )
    assert ok.properties.nocp_corrected_total_energy_through_1_body < 0


def test_unknown_cluster_names_say_what_to_do():
    with pytest.raises(ValueError, match="not understood"):
        qcmb_dask.compute(mbe_input(2), cluster=3.14, progress=False)
    with pytest.raises(ValueError, match=r"not understood.*a batch system \(slurm, pbs.*'mpi'"):
        qcmb_dask.compute(mbe_input(2), cluster="slrum", progress=False)
