"""Run one method/driver in PySCF and collect QCSchema properties.

Kept apart from the harness so that the method logic can be read without the QCSchema plumbing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qcengine.exceptions import ConvergenceError, InputError

from .options import PySCFOptions

CORRELATED = ("mp2", "ccsd", "ccsd(t)")
HF_NAMES = ("hf", "scf")

#: Which drivers each method family supports; anything else is an InputError naming this table.
SUPPORTED_DRIVERS = {
    "hf": ("energy", "gradient", "hessian"),
    "dft": ("energy", "gradient", "hessian"),
    "mp2": ("energy", "gradient"),
    "ccsd": ("energy", "gradient"),
    "ccsd(t)": ("energy",),
}


def method_family(method: str) -> str:
    """``hf``, ``dft``, ``mp2``, ``ccsd`` or ``ccsd(t)``; an unknown name is an InputError."""
    name = method.lower()
    if name in HF_NAMES:
        return "hf"
    if name in CORRELATED:
        return name
    from pyscf.dft import libxc

    try:
        libxc.parse_xc(name)
    except (KeyError, ValueError) as err:
        raise InputError(
            f"PySCF does not know the method {method!r}: use hf, mp2, ccsd, ccsd(t) or a DFT functional name "
            f"that PySCF/libxc knows (b3lyp, pbe0, wb97x-v, ...)."
        ) from err
    return "dft"


def check_supported(family: str, driver: str, method: str, embedded: bool) -> None:
    if driver not in SUPPORTED_DRIVERS[family]:
        table = "; ".join(f"{fam}: {', '.join(drv)}" for fam, drv in SUPPORTED_DRIVERS.items())
        raise InputError(f"PySCF harness cannot run driver {driver!r} for method {method!r}. Supported: {table}.")
    if embedded and driver == "hessian":
        raise InputError(
            "PySCF harness: hessians with embedding point charges are not supported (energy, gradient are)."
        )


@dataclass
class MethodOutcome:
    energy: float
    properties: dict[str, Any] = field(default_factory=dict)
    gradient: np.ndarray | None = None
    hessian: np.ndarray | None = None


def run(
    mol, method: str, driver: str, options: PySCFOptions, point_charges=None, on_gpu: bool = False
) -> MethodOutcome:
    """Run ``method`` for ``driver`` on ``mol``; returns energies, derivatives and QCSchema properties.

    ``on_gpu``: with gpu4pyscf's classes (the caller has checked :func:`gpu.unsupported` and holds the card);
    the results come back as numpy.
    """
    family = method_family(method)
    check_supported(family, driver, method, point_charges is not None)

    mf = _converged_scf(mol, family, method, options, point_charges, on_gpu)
    props = _scf_properties(mol, mf, family)
    outcome = MethodOutcome(energy=float(mf.e_tot), properties=props)

    solver = mf
    if family == "mp2":
        solver = _mp2(mf, options, props, on_gpu)
        outcome.energy = float(solver.e_tot)
    elif family in ("ccsd", "ccsd(t)"):
        solver = _ccsd(mf, options, props)
        outcome.energy = float(solver.e_tot)
        if family == "ccsd(t)":
            e_t = float(solver.ccsd_t())
            props["ccsd_prt_pr_correlation_energy"] = float(solver.e_corr) + e_t
            props["ccsd_prt_pr_total_energy"] = float(solver.e_tot) + e_t
            outcome.energy = float(solver.e_tot) + e_t

    if driver in ("gradient", "hessian"):
        outcome.gradient = _gradient(solver, method)
    if driver == "hessian":
        outcome.hessian = _hessian(mf, mol.natm, method)
    if family in ("hf", "dft") and outcome.gradient is not None:
        props["scf_total_gradient"] = outcome.gradient
    if outcome.hessian is not None:
        props["scf_total_hessian"] = outcome.hessian
    return outcome


def _converged_scf(mol, family: str, method: str, options: PySCFOptions, point_charges, on_gpu: bool = False):
    if on_gpu:
        from gpu4pyscf import dft, qmmm, scf
        from gpu4pyscf.dft import gen_grid, radi
    else:
        from pyscf import dft, qmmm, scf
        from pyscf.dft import gen_grid, radi

    reference = options.reference or ("rhf" if mol.spin == 0 else "uhf")
    if reference == "rhf" and mol.spin != 0:
        raise InputError(
            f"reference='rhf' needs a closed shell; this molecule has multiplicity {mol.spin + 1}. Use uhf or rohf."
        )
    # Pinned, on both devices, so that a fragment gives the same number on a CPU or a GPU worker: the grid
    # (level, pruning, radial scheme, partitioning), the auxiliary basis (PySCF's JK-fit choice, named), and
    # below MP2's RI basis and the SCF thresholds. gpu4pyscf's defaults differ from PySCF's in places.
    if family == "dft":
        mf = {"rhf": dft.RKS, "uhf": dft.UKS, "rohf": dft.ROKS}[reference](mol)
        mf.xc = method
        mf.grids.level = options.grid_level
        mf.grids.prune = gen_grid.nwchem_prune
        mf.grids.radi_method = radi.treutler
        mf.grids.becke_scheme = gen_grid.original_becke
    else:
        mf = {"rhf": scf.RHF, "uhf": scf.UHF, "rohf": scf.ROHF}[reference](mol)
    if options.density_fitting:
        mf = mf.density_fit(auxbasis=jk_auxbasis(mol, options))
    if point_charges is not None:
        coords, charges = point_charges
        mf = qmmm.mm_charge(mf, coords, charges, unit="Bohr")

    mf.conv_tol = options.conv_tol
    mf.conv_tol_grad = options.conv_tol_grad
    mf.max_cycle = options.max_cycle
    mf.level_shift = options.level_shift
    mf.init_guess = options.init_guess
    mf.kernel()
    if not mf.converged:
        raise ConvergenceError(
            f"PySCF {type(mf).__name__} did not converge in {options.max_cycle} cycles (conv_tol={options.conv_tol}); "
            f"last energy {float(mf.e_tot):.10f}. Try keywords max_cycle, level_shift or init_guess."
        )
    return mf


def jk_auxbasis(mol, options: PySCFOptions):
    """The SCF's auxiliary basis: the user's name, else the JK-fit basis PySCF picks (named for either device)."""
    if isinstance(options.density_fitting, str):
        return options.density_fitting
    from pyscf import df

    return df.make_auxbasis(mol)


def ri_auxbasis(mol):
    """MP2's auxiliary basis on a density-fitted SCF: the RI (mp2fit) basis, as gpu4pyscf's DF-MP2 uses."""
    from pyscf import df

    return df.make_auxbasis(mol, mp2fit=True)


def _scf_properties(mol, mf, family: str) -> dict[str, Any]:
    from .gpu import to_numpy

    nalpha, nbeta = mol.nelec
    mo_coeff = to_numpy(mf.mo_coeff)
    mo_coeff = mo_coeff[0] if isinstance(mo_coeff, (tuple, list)) or np.ndim(mo_coeff) == 3 else mo_coeff
    props: dict[str, Any] = {
        "calcinfo_nbasis": int(mol.nao),
        "calcinfo_nmo": int(np.shape(mo_coeff)[-1]),
        "calcinfo_nalpha": int(nalpha),
        "calcinfo_nbeta": int(nbeta),
        "calcinfo_natom": int(mol.natm),
        "nuclear_repulsion_energy": float(mol.energy_nuc()),
        "scf_total_energy": float(mf.e_tot),
        "scf_iterations": int(getattr(mf, "cycles", 0) or 0),
        "scf_dipole_moment": np.asarray(to_numpy(mf.dip_moment(unit="AU", verbose=0)), dtype=float).tolist(),
    }
    summary = getattr(mf, "scf_summary", {}) or {}
    if "e1" in summary:
        props["scf_one_electron_energy"] = float(summary["e1"])
    if "coul" in summary:
        # PySCF's "coul" holds Coulomb plus any exact exchange, QCSchema's two-electron energy.
        props["scf_two_electron_energy"] = float(summary["coul"])
    if family == "dft" and "exc" in summary:
        props["scf_xc_energy"] = float(summary["exc"])
    return props


def _frozen(mf, options: PySCFOptions) -> int | None:
    if not options.frozen_core:
        return None
    from pyscf.data.elements import chemcore

    # Ghost atoms have zero nuclear charge, so chemcore counts the real atoms' cores only.
    return chemcore(mf.mol) or None


def _mp2(mf, options: PySCFOptions, props: dict[str, Any], on_gpu: bool = False):
    frozen = _frozen(mf, options)
    if on_gpu:  # RHF only (gpu.unsupported)
        from gpu4pyscf.mp import dfmp2, mp2

        if options.density_fitting:
            pt = dfmp2.DFMP2(mf, frozen=frozen, auxbasis=ri_auxbasis(mf.mol))
            pt.fp_type = "FP64"  # gpu4pyscf may otherwise choose single precision
        else:
            pt = mp2.RMP2(mf, frozen=frozen)
    else:
        from pyscf import df, mp

        pt = mp.MP2(mf, frozen=frozen)
        if options.density_fitting:
            # PySCF's DF-MP2 would reuse the SCF's JK-fit basis; gpu4pyscf's uses the RI basis. Pinned to RI.
            pt.with_df = df.DF(mf.mol, auxbasis=ri_auxbasis(mf.mol))
    pt.kernel()
    props["mp2_correlation_energy"] = float(pt.e_corr)
    props["mp2_total_energy"] = float(pt.e_tot)
    for attr, key in (
        ("e_corr_ss", "mp2_same_spin_correlation_energy"),
        ("e_corr_os", "mp2_opposite_spin_correlation_energy"),
    ):
        value = getattr(pt, attr, None)
        if value is not None:
            props[key] = float(value)
    props["mp2_doubles_energy"] = float(pt.e_corr)
    props["mp2_singles_energy"] = 0.0
    return pt


def _ccsd(mf, options: PySCFOptions, props: dict[str, Any]):
    from pyscf import cc

    mycc = cc.CCSD(mf, frozen=_frozen(mf, options))
    mycc.conv_tol = options.cc_conv_tol
    mycc.kernel()
    if not mycc.converged:
        raise ConvergenceError(f"PySCF CCSD amplitudes did not converge (cc_conv_tol={options.cc_conv_tol}).")
    props["ccsd_correlation_energy"] = float(mycc.e_corr)
    props["ccsd_total_energy"] = float(mycc.e_tot)
    return mycc


def _gradient(solver, method: str) -> np.ndarray:
    try:
        grad = solver.nuc_grad_method().kernel()
    except NotImplementedError as err:
        raise InputError(f"PySCF has no analytic gradient for {method!r} with these options: {err}") from err
    from .gpu import to_numpy

    return np.asarray(to_numpy(grad), dtype=float).reshape(-1, 3)


def _hessian(mf, natom: int, method: str) -> np.ndarray:
    try:
        hess = mf.Hessian().kernel()
    except (NotImplementedError, AttributeError) as err:
        raise InputError(f"PySCF has no analytic hessian for {method!r} with these options: {err}") from err
    # PySCF returns (natom, natom, 3, 3); QCSchema wants (3 natom, 3 natom).
    from .gpu import to_numpy

    return np.asarray(to_numpy(hess), dtype=float).transpose(0, 2, 1, 3).reshape(3 * natom, 3 * natom)
