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


def test_fragment_of_is_qcelementals_get_fragment_on_any_layout():
    """The O(fragment) builder gives what get_fragment(group_fragments=False) gives, on a parent of unequal,
    charged and open-shell fragments, for real and ghost sets of each kind, in and out of order."""
    import itertools

    import numpy as np
    from qcelemental.models.v2 import Molecule

    from qcmb_dask.qcmanybody_adapter import fragment_of

    rng = np.random.default_rng(7)
    symbols = ["O", "H", "H", "N", "H", "H", "H", "O", "H", "C", "O", "O", "H", "H"]  # NH3+ is a doublet
    parent = Molecule(
        symbols=symbols,
        geometry=rng.normal(scale=4.0, size=(len(symbols), 3)),
        fragments=[[0, 1, 2], [3, 4, 5, 6], [7, 8], [9, 10], [11, 12, 13]],
        fragment_charges=[0, 1, -1, 0, 0],
        name="mixed",
    )
    parent = prepare_parent(parent)
    nfragments = len(parent.fragments)
    for size in (1, 2, 3):
        for chosen in itertools.combinations(range(nfragments), size):
            for nreal in range(1, size + 1):
                for real in itertools.combinations(chosen, nreal):
                    ghost = [f for f in reversed(chosen) if f not in real]  # the order QCManyBody's sets give
                    expected = parent.get_fragment(list(real), ghost, orient=False, group_fragments=False)
                    built = fragment_of(parent, list(real), ghost)
                    assert built == expected, (real, ghost)
                    assert built.model_dump_json() == expected.model_dump_json(), (real, ghost)
