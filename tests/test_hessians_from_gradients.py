"""Hessians from displaced fragment gradients (programs with gradients only), and harmonic frequencies."""

from __future__ import annotations

import dask
import numpy as np
import pytest

import qcmb_dask
from qcmb_dask.errors import InvalidInput

from .conftest import mbe_input, qcmanybody_reference


def dimer_hessian_input(method: str, bsse: str = "nocp", **extra) -> dict:
    return mbe_input(
        2, driver="hessian", keywords={"bsse_type": bsse, "max_nbody": 2}, specs={"(auto)": (method, "6-31g")}, **extra
    )


def test_each_displaced_gradient_is_its_own_task():
    data = dimer_hessian_input("mp2")
    graph = qcmb_dask.build_graph(data)
    keys = [str(k) for k in graph.result.__dask_graph__()]
    # nocp dimer: two monomers of 3 atoms and the dimer of 6, each coordinate displaced + and -
    assert sum(k.startswith("displaced-") for k in keys) == 2 * 3 * (3 + 3 + 6)
    assert sum(k.startswith("gradient-at-") for k in keys) == 3
    with dask.config.set({"qcmb_dask.hessians": "auto"}):
        hf = qcmb_dask.build_graph(dimer_hessian_input("hf"))
    assert not any(str(k).startswith("displaced-") for k in hf.result.__dask_graph__())  # PySCF's own Hessian


@pytest.mark.slow
@pytest.mark.parametrize("bsse", ["nocp", "cp"])
def test_hf_hessian_from_gradients_equals_the_analytic_many_body_hessian(bsse, tmp_path):
    data = dimer_hessian_input("hf", bsse)
    with dask.config.set({"qcmb_dask.hessians": "gradients"}):
        ours = qcmb_dask.compute(data, cache=tmp_path, progress=False)
    reference = qcmanybody_reference(data)  # PySCF's analytic fragment Hessians, QCManyBody's sequential path
    np.testing.assert_allclose(np.asarray(ours.return_result), np.asarray(reference.return_result), rtol=0, atol=1e-5)
    assert abs(ours.properties.return_energy - reference.properties.return_energy) < 1e-9
    np.testing.assert_allclose(
        np.asarray(ours.properties.return_gradient), np.asarray(reference.properties.return_gradient), atol=1e-8
    )
    # again: every displaced gradient is read from the store
    with dask.config.set({"qcmb_dask.hessians": "gradients"}):
        again = qcmb_dask.compute(data, cache=tmp_path, progress=False)
    assert again.extras["qcmb_dask"]["computed"] == 0
    with dask.config.set({"qcmb_dask.hessians": "gradients"}):
        counted = qcmb_dask.progress_in_store(data, cache=tmp_path)  # every part of every fragment stored
    assert all(done == planned for done, planned in counted.values())
    assert np.array_equal(np.asarray(again.return_result), np.asarray(ours.return_result))


def supersystem_mp2_hessian(molecule, step: float = 0.002) -> np.ndarray:
    """Central differences of PySCF's MP2 gradient of the whole dimer (no many-body expansion at all)."""
    from pyscf import gto, mp, scf

    geometry = np.asarray(molecule.geometry, dtype=float).reshape(-1, 3)

    def gradient(coordinates):
        mol = gto.M(
            atom=[(s, tuple(x)) for s, x in zip(molecule.symbols, coordinates)], unit="bohr", basis="6-31g", verbose=0
        )
        mf = scf.RHF(mol)
        mf.conv_tol, mf.conv_tol_grad = 1e-10, 1e-8
        mf.kernel()
        return mp.MP2(mf).run().nuc_grad_method().kernel().ravel()

    rows = []
    for index in range(geometry.size):
        plus, minus = geometry.copy().ravel(), geometry.copy().ravel()
        plus[index] += step
        minus[index] -= step
        rows.append((gradient(plus.reshape(-1, 3)) - gradient(minus.reshape(-1, 3))) / (2 * step))
    hessian = np.array(rows)
    return (hessian + hessian.T) / 2


@pytest.mark.slow
def test_mp2_dimer_frequencies_match_the_supersystems_within_one_wavenumber(tmp_path):
    data = dimer_hessian_input("mp2")
    result = qcmb_dask.compute(data, cache=tmp_path, progress=False)  # MP2: PySCF has gradients only
    ours = qcmb_dask.frequencies(result)
    molecule = result.input_data.molecule
    theirs = qcmb_dask.frequencies(molecule=molecule, hessian=supersystem_mp2_hessian(molecule))
    assert len(ours) == 12
    np.testing.assert_allclose(ours.wavenumbers, theirs.wavenumbers, rtol=0, atol=1.0)
    assert "wavenumber" in ours.table() and len(ours.table().splitlines()) == 13


def test_frequencies_equal_pyscfs_harmonic_analysis():
    from pyscf import gto, scf
    from pyscf.hessian import thermo
    from qcelemental.models.v2 import Molecule

    from .conftest import water_cluster

    molecule = Molecule(**water_cluster(1))
    geometry = np.asarray(molecule.geometry).reshape(-1, 3)
    mol = gto.M(atom=[(s, tuple(x)) for s, x in zip(molecule.symbols, geometry)], unit="bohr", basis="sto-3g")
    hessian = scf.RHF(mol).run(verbose=0).Hessian().kernel()  # natom x natom x 3 x 3
    theirs = thermo.harmonic_analysis(mol, hessian, imaginary_freq=False, mass=np.asarray(molecule.masses))
    ours = qcmb_dask.frequencies(molecule=molecule, hessian=hessian.transpose(0, 2, 1, 3).reshape(9, 9))
    np.testing.assert_allclose(ours.wavenumbers, theirs["freq_wavenumber"], rtol=0, atol=1e-3)


def test_what_cannot_be_done_is_refused_before_anything_runs(tmp_path):
    data = dimer_hessian_input("mp2", protocols={"cluster_results": "all"})
    with pytest.raises(InvalidInput, match="cluster_results='all' with Hessians from differences"):
        qcmb_dask.compute(data, cache=tmp_path / "store", progress=False)
    assert not (tmp_path / "store").exists()  # refused before the store was touched or a cluster asked for
    with pytest.raises(ValueError, match="need a Hessian"):
        qcmb_dask.frequencies(qcmanybody_reference(mbe_input(2, driver="gradient", keywords={"bsse_type": "nocp"})))
    with dask.config.set({"qcmb_dask.hessians": "sometimes"}), pytest.raises(ValueError, match="'auto' or 'gradients'"):
        qcmb_dask.build_graph(dimer_hessian_input("hf"))


def test_the_command_line_prints_the_frequency_table(tmp_path):
    import json
    import subprocess

    from .test_cli import qcmb_dask_command

    path = tmp_path / "dimer-hessian.json"
    path.write_text(json.dumps(mbe_input(2, driver="hessian", keywords={"bsse_type": "nocp"})))
    out = tmp_path / "result.json"
    report = tmp_path / "report.html"
    run = [*qcmb_dask_command(), "run", str(path), "--cluster", "sync", "--no-cache", "--out", str(out), "-q"]
    run += ["--report", str(report)]
    ran = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert "Harmonic frequencies of the many-body Hessian" in ran.stdout
    table = subprocess.run([*qcmb_dask_command(), "frequencies", str(out)], capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    expected = qcmb_dask.frequencies(str(out)).wavenumbers
    assert [float(line.split()[1]) for line in table.stdout.splitlines()[1:]] == pytest.approx(expected, abs=0.01)
    assert table.stdout.strip() in ran.stdout
    assert "Harmonic frequencies of the many-body Hessian" in report.read_text()  # the HTML report has them too
