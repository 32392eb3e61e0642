"""Workers build fragment molecules from the parent: identical to ManyBodyCore.iterate_molecules()."""

import pytest
from qcmanybody.models.v2 import ManyBodyInput
from qcmanybody.v2 import ManyBodyComputer

import qcmb_dask
from qcmb_dask.qcmanybody_adapter import build_fragment_molecule, prepare_parent

from .conftest import mbe_input, water_cluster

EMBEDDING = {1: [-0.8, 0.4, 0.4], 2: [-0.8, 0.4, 0.4], 3: [-0.8, 0.4, 0.4]}


def check_identical(data):
    computer = ManyBodyComputer.from_manybodyinput(ManyBodyInput(**data), build_tasks=False)
    plan = qcmb_dask.plan(data)
    tasks = {t.label: t for t in plan}
    parent = prepare_parent(computer.molecule)  # as the graph's parent node gives it to workers
    n = 0
    for _, label, expected in computer.qcmb_core.iterate_molecules():
        task = tasks[label]
        built = build_fragment_molecule(parent, task.real, task.basis, plan.embedding_charges)
        assert built == expected, label  # QCElemental compares geometry, masks, charges, flags
        assert built.model_dump_json() == expected.model_dump_json(), label
        assert built.extras == expected.extras, label
        n += 1
    assert n == len(plan)


@pytest.mark.parametrize("bsse", ["cp", "nocp", "vmfc"])
def test_fragments_identical_to_qcmanybody(bsse):
    check_identical(mbe_input(3, keywords={"bsse_type": bsse, "return_total_data": True}))


def test_fix_symmetry_c1_and_charged_fragments_pass_through():
    data = mbe_input(3, keywords={"bsse_type": ["nocp", "cp"]})
    data["molecule"] = water_cluster(3, fix_symmetry="c1")
    data["molecule"]["symbols"][1] = "H"
    check_identical(data)


def test_charged_open_shell_fragments():
    mol = water_cluster(3)
    # OH radical + water + water: fragment charges and multiplicities must follow each fragment.
    mol["symbols"] = mol["symbols"][:2] + mol["symbols"][3:]
    mol["geometry"] = mol["geometry"][:6] + mol["geometry"][9:]
    mol["fragments"] = [[0, 1], [2, 3, 4], [5, 6, 7]]
    mol["fragment_multiplicities"] = [2, 1, 1]
    mol["molecular_multiplicity"] = 2
    data = mbe_input(3, keywords={"bsse_type": ["cp", "vmfc"]})
    data["molecule"] = mol
    check_identical(data)


def test_embedding_charges_in_extras(embedding_enabled):
    check_identical(
        mbe_input(3, keywords={"bsse_type": "nocp", "return_total_data": True, "embedding_charges": EMBEDDING})
    )
