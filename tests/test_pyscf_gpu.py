"""The PySCF harness's GPU path: keywords and refusals, what a CPU-only worker says, store keys, the settings
pinned on both devices (DF-MP2's RI basis), the per-card lock, and CPU-vs-GPU numbers where a GPU is."""

import multiprocessing
import time
from dataclasses import asdict, fields

import numpy as np
import pytest
import qcengine
from qcelemental.models.v2 import AtomicInput, Molecule
from qcengine.exceptions import InputError, ResourceError

from qcmb_dask.programs import register_shipped
from qcmb_dask.programs.pyscf import PySCFHarness, PySCFOptions, gpu

from .conftest import BOHR_PER_ANGSTROM, WATER_TRIMER_ANGSTROM

register_shipped()

DIMER = [
    (s, x * BOHR_PER_ANGSTROM, y * BOHR_PER_ANGSTROM, z * BOHR_PER_ANGSTROM) for s, x, y, z in WATER_TRIMER_ANGSTROM[:6]
]
needs_gpu = pytest.mark.skipif(gpu.unavailable() is not None, reason="needs a CUDA GPU and gpu4pyscf")


def molecule(real=(True,) * 6):
    return Molecule(
        symbols=[a[0] for a in DIMER],
        geometry=[x for a in DIMER for x in a[1:]],
        real=list(real),
        fix_com=True,
        fix_orientation=True,
    )


def run(mol, method="hf", basis="sto-3g", driver="energy", keywords=None, raise_error=True):
    inp = AtomicInput(
        molecule=mol,
        specification={"driver": driver, "model": {"method": method, "basis": basis}, "keywords": keywords or {}},
    )
    return qcengine.compute(inp, "pyscf", raise_error=raise_error, task_config={"ncores": 1, "memory": 2})


def pyscf_mole(basis, real=(True,) * 6):
    from pyscf import gto

    # The coordinates as qcelemental keeps them (it rounds), so that both sides see the same molecule.
    geometry = np.asarray(molecule(real).geometry).reshape(-1, 3)
    atoms = [(s if r else f"ghost-{s}", tuple(xyz)) for (s, *_), r, xyz in zip(DIMER, real, geometry)]
    return gto.M(atom=atoms, unit="Bohr", basis=basis, verbose=0)


# --- keywords and refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keywords", "words"),
    [({"device": "tpu"}, "'cpu', 'gpu', 'auto'"), ({"gpu_unsupported": "maybe"}, "'cpu', 'refuse'")],
)
def test_unknown_device_choices_are_input_errors_listing_the_choices(keywords, words):
    with pytest.raises(InputError, match=words):
        PySCFOptions.from_keywords(keywords)


def test_ccsd_on_gpu_with_refuse_is_refused_before_anything_runs():
    keywords = {"device": "gpu", "gpu_unsupported": "refuse"}
    with pytest.raises(InputError) as err:
        PySCFHarness().check_request("ccsd", "sto-3g", "energy", keywords, False, ["O", "H"])
    assert "ccsd" in str(err.value).lower() and "device='cpu'" in str(err.value)
    assert "gpu_unsupported='cpu'" in str(err.value)
    # What gpu4pyscf has is not refused on the client (which has no GPU at a site).
    PySCFHarness().check_request("hf", "sto-3g", "gradient", keywords, False, ["O", "H"])
    PySCFHarness().check_request("mp2", "sto-3g", "energy", keywords, False, ["O", "H"])


def test_unsupported_lists_what_gpu4pyscf_lacks():
    assert gpu.unsupported("ccsd(t)", "energy", None, False, False)
    assert gpu.unsupported("mp2", "gradient", None, False, True)
    assert gpu.unsupported("mp2", "energy", "uhf", False, True)
    assert gpu.unsupported("hf", "gradient", "rohf", False, False)
    for family, driver in (("hf", "hessian"), ("dft", "gradient"), ("mp2", "energy")):
        assert gpu.unsupported(family, driver, None, True, False) is None


@pytest.mark.skipif(gpu.unavailable() is None, reason="this process has a GPU")
def test_gpu_on_a_cpu_only_worker_is_an_input_error_naming_the_package():
    assert "gpu4pyscf-cuda" in gpu.unavailable() or "no CUDA GPU is visible" in gpu.unavailable()
    result = run(molecule(), keywords={"device": "gpu"}, raise_error=False)
    assert result.success is False and result.error.error_type == "input_error"
    assert "gpu4pyscf-cuda" in result.error.error_message or "no CUDA GPU" in result.error.error_message


@pytest.mark.skipif(gpu.unavailable() is None, reason="this process has a GPU")
def test_fallbacks_run_on_the_cpu_and_say_so():
    ccsd = run(molecule(), method="ccsd", keywords={"device": "gpu"})
    assert ccsd.extras["pyscf"]["device"] == "cpu" and "CCSD" in ccsd.extras["pyscf"]["device_note"]
    auto = run(molecule(), keywords={"device": "auto"})
    assert auto.extras["pyscf"]["device"] == "cpu" and "gpu4pyscf" in auto.extras["pyscf"]["device_note"]
    plain = run(molecule())
    assert plain.extras["pyscf"]["device"] == "cpu" and "device_note" not in plain.extras["pyscf"]
    assert auto.return_result == plain.return_result


def test_gpu_out_of_memory_becomes_a_resource_error_with_the_marker():
    class OutOfMemoryError(Exception):  # stands in for cupy.cuda.memory.OutOfMemoryError
        __module__ = "cupy.cuda.memory"

    for raised in (OutOfMemoryError("out of memory allocating 8 GiB"), RuntimeError("cudaErrorMemoryAllocation")):
        with pytest.raises(ResourceError) as err, gpu.out_of_memory_as_resource_error():
            raise raised
        assert str(err.value).startswith(gpu.GPU_OUT_OF_MEMORY)
    with pytest.raises(ValueError), gpu.out_of_memory_as_resource_error():
        raise ValueError("not memory")


# --- store keys ----------------------------------------------------------------------------------------------


def test_store_keywords_drop_the_device_and_mark_df_mp2_only():
    harness = PySCFHarness()
    assert harness.store_keywords("hf", {"device": "gpu", "gpu_unsupported": "refuse", "conv_tol": 1e-9}) == {
        "conv_tol": 1e-9
    }
    assert harness.store_keywords("hf", {"density_fitting": True}) == {"density_fitting": True}
    assert harness.store_keywords("mp2", {"device": "auto"}) == {}
    assert harness.store_keywords("mp2", {"density_fitting": True, "device": "gpu"}) == {
        "density_fitting": True,
        "mp2_auxbasis": "ri",
    }


def test_store_fingerprint_is_unchanged_by_the_device_keywords():
    before = {f.name: f.default for f in fields(PySCFOptions) if f.name not in ("device", "gpu_unsupported")}
    assert PySCFHarness().store_fingerprint()["defaults"] == before
    assert set(asdict(PySCFOptions())) - set(before) == {"device", "gpu_unsupported"}


# --- pinned settings on the CPU --------------------------------------------------------------------------------


def test_pinned_df_mp2_uses_the_ri_basis_as_pyscf_does_without_a_df_scf():
    from pyscf import df, scf
    from pyscf.mp import dfmp2

    mol = pyscf_mole("cc-pvdz", real=(True, True, True, False, False, False))
    mf = scf.RHF(mol).density_fit(auxbasis=df.make_auxbasis(mol))
    mf.conv_tol, mf.conv_tol_grad = 1e-12, 1e-10  # tight: MP2 is not variational in the orbitals
    mf.kernel()
    # Independent of the harness's construction: PySCF's DFMP2 on a non-DF SCF object picks the RI basis itself.
    plain = scf.RHF(mol)
    ri = dfmp2.DFMP2(plain, mo_coeff=mf.mo_coeff, mo_occ=mf.mo_occ, mo_energy=mf.mo_energy)
    ri_e_corr = float(dfmp2.kernel(ri, with_t2=False)[0])  # canonical orbitals: the closed-form energy
    old_jk = dfmp2.DFMP2(mf)  # before the pin: the SCF's JK-fit basis
    old_jk.kernel()

    cp_monomer = molecule(real=(True, True, True, False, False, False))
    tight = {"density_fitting": True, "conv_tol": 1e-12, "conv_tol_grad": 1e-10}
    result = run(cp_monomer, method="mp2", basis="cc-pvdz", keywords=tight)
    assert abs(result.properties.mp2_correlation_energy - ri_e_corr) < 1e-10
    assert abs(result.return_result - (mf.e_tot + ri_e_corr)) < 1e-10
    assert abs(old_jk.e_corr - ri_e_corr) > 1e-6  # the pin changes the number: hence the new store key


@pytest.mark.parametrize("method", ["hf", "b3lyp", "mp2"])
def test_other_cpu_numbers_are_unchanged_by_the_pin(method):
    from pyscf import dft, mp, scf

    mol = pyscf_mole("6-31g")
    mf = dft.RKS(mol, xc=method) if method == "b3lyp" else scf.RHF(mol)
    if method == "hf":
        mf = mf.density_fit()  # PySCF's default JK-fit basis, now named explicitly by the harness
    mf.conv_tol, mf.conv_tol_grad = 1e-10, 1e-8
    mf.kernel()
    expected = mf.e_tot + (mp.MP2(mf).kernel()[0] if method == "mp2" else 0.0)
    keywords = {"density_fitting": True} if method == "hf" else {}
    assert abs(run(molecule(), method=method, basis="6-31g", keywords=keywords).return_result - expected) < 1e-9


# --- the per-card lock -----------------------------------------------------------------------------------------


def _take_shared(path, acquired):
    with gpu.card_lock(path):
        acquired.set()


def test_an_exclusive_holder_excludes_a_shared_one(tmp_path):
    path = str(tmp_path / "card.lock")
    context = multiprocessing.get_context("fork")
    acquired = context.Event()
    with gpu.alone(), gpu.card_lock(path):
        assert gpu.ALONE.get() is True
        child = context.Process(target=_take_shared, args=(path, acquired))
        child.start()
        assert not acquired.wait(0.5)  # held exclusively: the shared fragment waits
    assert gpu.ALONE.get() is False
    assert acquired.wait(10)
    child.join(10)
    # Two shared holders share.
    acquired.clear()
    with gpu.card_lock(path):
        child = context.Process(target=_take_shared, args=(path, acquired))
        start = time.time()
        child.start()
        assert acquired.wait(10) and time.time() - start < 10
    child.join(10)


def _take_alone(path, acquired):
    with gpu.alone(), gpu.card_lock(path):
        acquired.set()


def test_a_fragment_waiting_to_run_alone_keeps_new_fragments_off_the_card(tmp_path):
    """Without the gate, fragments of the card's other processes taking turns on the shared lock would starve the
    retry that waits for the card to itself."""
    path = str(tmp_path / "card.lock")
    context = multiprocessing.get_context("fork")
    alone, newcomer = context.Event(), context.Event()
    with gpu.card_lock(path):  # a fragment runs
        waiting = context.Process(target=_take_alone, args=(path, alone))
        waiting.start()
        time.sleep(0.5)  # the retry now waits for the card, holding the gate
        late = context.Process(target=_take_shared, args=(path, newcomer))
        late.start()
        assert not newcomer.wait(0.5) and not alone.is_set()
    assert alone.wait(10)  # the running fragment ended: the retry goes first, then the newcomer
    assert newcomer.wait(10)
    waiting.join(10)
    late.join(10)


# --- CPU versus GPU ---------------------------------------------------------------------------------------------


@needs_gpu
@pytest.mark.parametrize(
    ("method", "basis", "keywords", "driver"),
    [
        ("hf", "6-31g", {}, "gradient"),
        ("b3lyp", "6-31g", {}, "gradient"),
        ("hf", "6-31g", {"density_fitting": True}, "gradient"),
        ("mp2", "cc-pvdz", {"density_fitting": True}, "energy"),
        ("mp2", "6-31g", {}, "energy"),
    ],
)
@pytest.mark.parametrize("real", [(True,) * 6, (True, True, True, False, False, False)], ids=["dimer", "cp"])
def test_cpu_and_gpu_agree(method, basis, keywords, driver, real):
    cpu = run(molecule(real), method, basis, driver, {**keywords, "device": "cpu"})
    on_gpu = run(molecule(real), method, basis, driver, {**keywords, "device": "gpu", "gpu_unsupported": "refuse"})
    assert on_gpu.extras["pyscf"]["device"] == "gpu"
    assert abs(cpu.properties.return_energy - on_gpu.properties.return_energy) < 1e-8
    if driver == "gradient":
        assert np.abs(np.asarray(cpu.return_result) - np.asarray(on_gpu.return_result)).max() < 1e-8


@needs_gpu
def test_cpu_and_gpu_agree_on_an_rhf_hessian():
    cpu = run(molecule(), "hf", "6-31g", "hessian", {"device": "cpu"})
    on_gpu = run(molecule(), "hf", "6-31g", "hessian", {"device": "gpu"})
    assert np.abs(np.asarray(cpu.return_result) - np.asarray(on_gpu.return_result)).max() < 1e-6
