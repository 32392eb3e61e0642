"""plan: the calculations, their order and n-body levels are exactly QCManyBody's; no QC runs here."""

import pytest
from qcmanybody.models.v2 import ManyBodyInput
from qcmanybody.v2 import ManyBodyComputer

import qcmb_dask

from .conftest import mbe_input

CASES = {
    "cp": mbe_input(3, keywords={"bsse_type": "cp"}),
    "cp-rtd": mbe_input(3, keywords={"bsse_type": "cp", "return_total_data": True}),
    "nocp-max2": mbe_input(3, keywords={"bsse_type": "nocp", "max_nbody": 2}),
    "vmfc": mbe_input(3, keywords={"bsse_type": "vmfc"}),
    "all": mbe_input(3, keywords={"bsse_type": ["cp", "nocp", "vmfc"]}),
    "multilevel": mbe_input(
        3,
        keywords={"bsse_type": ["nocp", "cp"], "levels": {1: "mp2", 2: "hf"}},
        specs={"mp2": ("mp2", "sto-3g"), "hf": ("hf", "sto-3g")},
    ),
    "supersystem": mbe_input(
        3,
        keywords={"bsse_type": "nocp", "levels": {1: "mp2", 2: "hf", "supersystem": "big"}},
        specs={"mp2": ("mp2", "sto-3g"), "hf": ("hf", "sto-3g"), "big": ("hf", "6-31g")},
    ),
    "sio": mbe_input(3, keywords={"bsse_type": "cp", "supersystem_ie_only": True}),
}


def qcmanybody_labels(data):
    computer = ManyBodyComputer.from_manybodyinput(ManyBodyInput(**data), build_tasks=False)
    return [label for _, label, _ in computer.qcmb_core.iterate_molecules()]


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_has_qcmanybody_calculations_in_its_order(case):
    plan = qcmb_dask.plan(CASES[case])
    assert [t.label for t in plan] == qcmanybody_labels(CASES[case])
    assert len(plan) == len(set(t.label for t in plan))


@pytest.mark.parametrize("case", sorted(CASES))
def test_level_labels_are_calculations_of_that_level_or_below(case):
    plan = qcmb_dask.plan(CASES[case])
    level_of = {t.label: t.nbody for t in plan}
    for k, labels in plan.level_labels.items():
        assert all(level_of[label] <= k for label in labels)


def test_vmfc_counts_monomers_in_dimer_basis_as_two_body():
    plan = qcmb_dask.plan(CASES["vmfc"])
    for task in plan:
        assert task.nbody == len(task.basis)


def test_supersystem_ie_only_keeps_only_formable_levels():
    plan = qcmb_dask.plan(CASES["sio"])
    assert 2 not in plan.level_labels  # 2-body calculations are skipped by design
    assert sorted({t.nbody for t in plan}) == [1, 3]


def test_plan_table_counts_per_model_chemistry_and_level():
    plan = qcmb_dask.plan(CASES["multilevel"])
    # The HF monomers serve the 2-body HF correction, so they belong to level 2 of the graph.
    assert plan.counts() == {"mp2": {1: 3}, "hf": {2: 12}}
    text = str(plan)
    assert '"mp2" (pyscf mp2/sto-3g): 3' in text
    assert '"hf" (pyscf hf/sto-3g): 12' in text
    assert "2-body calculations:     12" in text


def test_fragment_tasks_carry_program_method_basis_driver():
    plan = qcmb_dask.plan(mbe_input(2, driver="gradient", specs={"(auto)": ("b3lyp", "6-31g")}))
    task = plan.tasks[0]
    assert (task.program, task.method, task.basis_set, task.driver) == ("pyscf", "b3lyp", "6-31g", "gradient")
    assert set(task.ghost) == set(task.basis) - set(task.real)


def test_embedding_with_a_program_that_cannot_take_charges_is_rejected(embedding_enabled):
    data = mbe_input(
        2,
        keywords={
            "bsse_type": "nocp",
            "return_total_data": True,
            "embedding_charges": {1: [-0.8, 0.4, 0.4], 2: [-0.8, 0.4, 0.4]},
        },
        program="nwchem",
    )
    with pytest.raises(ValueError, match="nwchem"):
        qcmb_dask.plan(data)


def test_bad_input_fails_in_planning():
    data = mbe_input(3, keywords={"bsse_type": "cp", "max_nbody": 5})
    with pytest.raises(ValueError, match="max_nbody"):
        qcmb_dask.plan(data)
