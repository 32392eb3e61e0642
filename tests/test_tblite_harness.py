"""The tblite harness (GFN-xTB, the cheap method): the numbers of tblite's own Python API, from coordinates
converted here from Angstrom (a unit error is a silently wrong number), charges and spins, its refusals, and a
many-body expansion equal to QCManyBody's sequential computer."""

from __future__ import annotations

import numpy as np
import pytest
import qcelemental as qcel
import qcengine
from qcelemental.models.v2 import AtomicInput, Molecule
from qcengine.exceptions import InputError

import qcmb_dask
from qcmb_dask.programs import TBLiteHarness, register_shipped
from qcmb_dask.store import ResultStore

from .conftest import WATER_DIMER_ANGSTROM, assert_same_result, mbe_input, qcmanybody_reference

DIMER = WATER_DIMER_ANGSTROM


def _atoms(text: str) -> tuple[list[str], np.ndarray]:
    rows = [line.split() for line in text.strip().splitlines()]
    return [r[0] for r in rows], np.array([[float(x) for x in r[1:]] for r in rows])


def direct(method: str, symbols, angstrom, charge=0, uhf=0, gradient=False, **settings):
    """tblite's own API, the molecule converted from Angstrom here, with the harness's settings."""
    from tblite.interface import Calculator

    numbers = np.array([qcel.periodictable.to_Z(s) for s in symbols])
    bohr = np.round(angstrom / qcel.constants.bohr2angstroms, 8)  # QCSchema keeps geometries to 1e-8 Bohr
    calculator = Calculator(method, numbers, bohr, charge=charge, uhf=uhf)
    smearing = 300.0 * 3.166808578545117e-6  # 300 K in Eh, as tblite takes it
    options = {"verbosity": 0, "accuracy": 0.01, "max-iter": 250, "mixer-damping": 0.4, "temperature": smearing}
    options.update(settings)
    for name, value in options.items():
        calculator.set(name, value)
    result = calculator.singlepoint()
    return result.get("gradient") if gradient else result.get("energy")


def run(symbols, angstrom, method="gfn2-xtb", driver="energy", charge=0, multiplicity=1, keywords=None, basis=None):
    register_shipped()
    molecule = Molecule(
        symbols=symbols,
        geometry=angstrom / qcel.constants.bohr2angstroms,
        molecular_charge=charge,
        molecular_multiplicity=multiplicity,
    )
    atomic = AtomicInput(
        molecule=molecule,
        specification={"driver": driver, "model": {"method": method, "basis": basis}, "keywords": keywords or {}},
    )
    return qcengine.compute(atomic, "tblite", raise_error=True)


@pytest.mark.parametrize(
    "method, name", [("gfn2-xtb", "GFN2-xTB"), ("GFN1-xTB", "GFN1-xTB"), ("ipea1-xtb", "IPEA1-xTB")]
)
def test_energies_and_gradients_are_tblites_own(method, name):
    symbols, angstrom = _atoms(DIMER)
    energy = run(symbols, angstrom, method)
    assert energy.return_result == pytest.approx(direct(name, symbols, angstrom), abs=1e-10)
    assert energy.properties.return_energy == energy.return_result
    gradient = run(symbols, angstrom, method, driver="gradient")
    np.testing.assert_allclose(gradient.return_result, direct(name, symbols, angstrom, gradient=True), atol=1e-10)
    assert gradient.properties.return_energy == pytest.approx(energy.return_result, abs=1e-10)
    assert gradient.provenance.creator == "tblite"


def test_the_gradient_is_the_derivative_of_the_energy_in_bohr():
    """A unit slip between Angstrom and Bohr would scale the gradient by 1.89: a finite difference catches it."""
    symbols, angstrom = _atoms(DIMER)
    analytic = np.asarray(run(symbols, angstrom, driver="gradient").return_result)
    step = 1e-4  # Bohr
    moved = [angstrom.copy(), angstrom.copy()]
    moved[0][3, 0] += step * qcel.constants.bohr2angstroms
    moved[1][3, 0] -= step * qcel.constants.bohr2angstroms
    plus, minus = (run(symbols, m, keywords={"accuracy": 1e-4}).return_result for m in moved)
    assert analytic[3, 0] == pytest.approx((plus - minus) / (2 * step), abs=2e-6)


def test_charge_and_unpaired_electrons_reach_tblite():
    symbols, angstrom = ["O", "H"], np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.97]])
    anion = run(symbols, angstrom, charge=-1)
    assert anion.return_result == pytest.approx(direct("GFN2-xTB", symbols, angstrom, charge=-1), abs=1e-10)
    radical = run(symbols, angstrom, multiplicity=2)
    assert radical.return_result == pytest.approx(direct("GFN2-xTB", symbols, angstrom, uhf=1), abs=1e-10)
    assert radical.return_result != pytest.approx(anion.return_result, abs=1e-3)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"method": "gfn3-xtb"}, "gfn2-xtb"),
        ({"basis": "sto-3g"}, "own minimal basis"),
        ({"keywords": {"acuracy": 1.0}}, "unknown keyword"),
        ({"keywords": {"accuracy": -1.0}}, "positive"),
        ({"keywords": {"max_iterations": 2.5}}, "whole number"),
        ({"driver": "hessian"}, "from displaced gradients"),
    ],
)
def test_what_tblite_cannot_run_is_an_input_error(change, words):
    symbols, angstrom = _atoms(DIMER)
    with pytest.raises(InputError, match=words):
        run(symbols, angstrom, **change)


def test_check_request_refuses_before_anything_runs():
    harness = TBLiteHarness()
    harness.check_request("gfn2-xtb", None, "gradient", {}, False, ["O", "H"])
    for args, words in [
        (("gfn2-xtb", None, "energy", {}, True, ["O"]), "embedding"),
        (("gfn2-xtb", None, "energy", {}, False, ["O", "U"]), "Rn"),
        (("hf", None, "energy", {}, False, ["O"]), "runs gfn2-xtb"),
        (("gfn2-xtb", "6-31g", "energy", {}, False, ["O"]), "own minimal basis"),
    ]:
        with pytest.raises(InputError, match=words):
            harness.check_request(*args)


def test_counterpoise_with_tblite_is_refused_before_anything_runs(tmp_path):
    data = mbe_input(3, keywords={"bsse_type": "cp"}, program="tblite", specs={"(auto)": ("gfn2-xtb", None)})
    with pytest.raises(qcmb_dask.InvalidInput, match="ghost atoms"):
        qcmb_dask.compute(data, "sync", cache=tmp_path, progress=False)
    assert list(ResultStore(tmp_path).entries()) == []


@pytest.mark.parametrize("driver", ["energy", "gradient"])
def test_a_gfn2_expansion_equals_qcmanybodys(driver, local_client):
    data = mbe_input(3, driver=driver, keywords={"bsse_type": "nocp"}, program="tblite",
                     specs={"(auto)": ("gfn2-xtb", None)})  # fmt: skip
    ours = qcmb_dask.compute(data, local_client, cache=False, progress=False)
    assert_same_result(ours, qcmanybody_reference(data))
