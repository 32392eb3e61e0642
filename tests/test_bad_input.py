"""Bad input is refused before anything is submitted, with a message that names the problem.

Every input here is a two-level water trimer whose 1-body level runs a working program that logs each
calculation (``FaultyHarness`` with no faults); the log staying empty shows that no QC calculation ran.
"""

import json

import pytest
import qcengine

import qcmb_dask
from qcmb_dask.validate import InvalidInput

from .conftest import mbe_input
from .fake_programs import FaultyHarness, calls


def two_level_input(bad_program="faulty", bad_method="hf", bad_basis="6-31g", driver="energy", keywords=None):
    """1-body with the logging program (always fine), 2- and 3-body with the model chemistry under test."""
    data = mbe_input(
        3,
        driver=driver,
        keywords={"bsse_type": "nocp", "levels": {1: "good", 3: "under-test"}, **(keywords or {})},
        specs={"good": ("hf", "sto-3g"), "under-test": (bad_method, bad_basis)},
        program="faulty",
    )
    data["specification"]["specification"]["under-test"]["program"] = bad_program
    return data


def molecule_changed(**changes):
    data = two_level_input()
    data["molecule"].update(changes)
    return data


def geometry_with_atom_4_on_atom_1():
    geometry = two_level_input()["molecule"]["geometry"]
    geometry[9:12] = geometry[0:3]
    return geometry


def uninstalled_program():
    """A program QCEngine knows that is not installed on this machine (CFOUR, else Psi4)."""
    for name in ("cfour", "psi4", "mrchem"):
        if not qcengine.get_program(name, check=False).found():
            return name
    pytest.skip("every candidate program is installed here")


BAD_INPUTS = {
    "atoms on top of each other": (
        lambda: molecule_changed(geometry=geometry_with_atom_4_on_atom_1()),
        r"molecule: .*too close",
    ),
    "impossible multiplicity": (
        lambda: molecule_changed(fragment_multiplicities=[2, 1, 1]),
        r"molecule: .*chg/mult",
    ),
    "charges that do not add up": (
        lambda: molecule_changed(molecular_charge=1),
        r"molecule: .*chg/mult",
    ),
    "one fragment": (
        lambda: molecule_changed(fragments=[list(range(9))], fragment_charges=[0], fragment_multiplicities=[1]),
        r"needs at least two.*fragments",
    ),
    "no fragmentation": (
        lambda: {
            **two_level_input(),
            "molecule": {
                k: v
                for k, v in two_level_input()["molecule"].items()
                if k not in ("fragments", "fragment_charges", "fragment_multiplicities")
            },
        },
        r"needs at least two",
    ),
    "unknown program": (
        lambda: two_level_input(bad_program="no-such-program"),
        r"program 'no-such-program' is unknown to QCEngine.*harnesses=",
    ),
    "method the program cannot do": (
        lambda: two_level_input(bad_program="pyscf", bad_method="casscf"),
        r"PySCF does not know the method 'casscf'",
    ),
    "driver the method cannot do": (
        lambda: two_level_input(bad_program="pyscf", bad_method="ccsd(t)", driver="gradient"),
        r"cannot run driver 'gradient' for method 'ccsd\(t\)'",
    ),
    "basis set the program lacks": (
        lambda: two_level_input(bad_program="pyscf", bad_basis="cc-pvdz-no-such"),
        r"Basis set 'cc-pvdz-no-such' is not in PySCF's basis library for H, O",
    ),
    "unknown program keyword": (
        lambda: _with_keywords(two_level_input(bad_program="pyscf"), {"conv_tl": 1e-8}),
        r"Unknown PySCF keyword\(s\) \['conv_tl'\]",
    ),
    "max_nbody larger than the fragment count": (
        lambda: two_level_input(keywords={"levels": {1: "good", 2: "under-test"}, "max_nbody": 4}),
        r"max_nbody=4 should be between 1 and 3",
    ),
    "unknown bsse_type": (
        lambda: two_level_input(keywords={"bsse_type": "counterpoise"}),
        r"bsse_type",
    ),
    "duplicate model chemistries": (
        lambda: two_level_input(bad_method="HF", bad_basis="STO-3G"),
        r"model chemistries 'good' and 'under-test' are the same calculation",
    ),
    "a level naming a model chemistry that is not given": (
        lambda: two_level_input(keywords={"levels": {1: "good", 3: "missing"}}),
        r"levels use model chemistry 'missing'.*names only 'good', 'under-test'",
    ),
}


def _with_keywords(data, keywords):
    data["specification"]["specification"]["under-test"]["keywords"] = keywords
    return data


@pytest.fixture
def logging_program(tmp_path):
    log = tmp_path / "calls.log"
    return FaultyHarness(extras={"log": str(log)}), log


def test_the_two_level_input_itself_is_fine(logging_program):
    """The baseline every bad input departs from runs, and its 1-body level goes through the log."""
    harness, log = logging_program
    plan = qcmb_dask.plan(two_level_input(), harnesses=[harness])
    assert {t.model_chemistry for t in plan} == {"good", "under-test"}
    qcmb_dask.compute(
        two_level_input(keywords={"levels": {1: "good"}, "max_nbody": 1}), "sync", harnesses=[harness], cache=False
    )
    assert calls(log) == 3


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_before_any_calculation(case, logging_program, tmp_path, scenario):
    make, message = BAD_INPUTS[case]
    harness, log = logging_program
    with pytest.raises(InvalidInput, match=message):
        qcmb_dask.compute(make(), "sync", harnesses=[harness], cache=tmp_path / "store", progress=False)
    assert calls(log) == 0
    assert not (tmp_path / "store").exists()  # not even the store was created
    scenario.record(f"bad input: {case}", "InvalidInput naming it, before anything ran", calls=0, stored=0)


def test_a_program_that_is_not_installed_says_how_to_get_it(logging_program):
    name = uninstalled_program()
    harness, log = logging_program
    data = two_level_input(bad_program=name)
    assert len(qcmb_dask.plan(data, harnesses=[harness])) > 0  # planning alone does not need it installed
    with pytest.raises(InvalidInput, match=rf"program '{name}' is not installed here: .*(conda|pip|apt|see)"):
        qcmb_dask.compute(data, "sync", harnesses=[harness], cache=False, progress=False)
    assert calls(log) == 0


def test_the_embedded_cluster_is_not_even_started_for_bad_input(logging_program, monkeypatch):
    import distributed

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started for an input that cannot run")

    monkeypatch.setattr(distributed, "LocalCluster", no_cluster)
    harness, log = logging_program
    with pytest.raises(InvalidInput, match="casscf"):
        qcmb_dask.compute(two_level_input(bad_program="pyscf", bad_method="casscf"), harnesses=[harness], cache=False)
    assert calls(log) == 0


def test_missing_and_malformed_input_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        qcmb_dask.compute(tmp_path / "nowhere.json", "sync", cache=False)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(two_level_input())[:-20])
    with pytest.raises(InvalidInput, match="broken.json"):
        qcmb_dask.compute(broken, "sync", cache=False)
