"""The documented keywords of the PySCF harness, validated before any PySCF object is built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from qcengine.exceptions import InputError

REFERENCES = ("rhf", "uhf", "rohf")
DEVICES = ("cpu", "gpu", "auto")
GPU_UNSUPPORTED = ("cpu", "refuse")
#: Keywords that choose where a fragment runs, not its number (the GPU path is pinned to the CPU's settings).
DEVICE_KEYWORDS = ("device", "gpu_unsupported")


@dataclass(frozen=True)
class PySCFOptions:
    """Keywords understood by the ``pyscf`` harness (``AtomicInput.specification.keywords``).

    Unknown keywords are an ``InputError``: a typo must not silently fall back to a default.
    """

    #: ``"rhf"``, ``"uhf"`` or ``"rohf"``; default RHF/RKS for singlets, UHF/UKS otherwise.
    reference: str | None = None
    #: SCF energy convergence (Eh). Tight by default so that many-body differences are not noise.
    conv_tol: float = 1e-10
    #: SCF orbital-gradient convergence. PySCF's own default, sqrt(conv_tol) = 1e-5, leaves ~1e-6 Eh
    #: errors in MP2 energies and gradients (non-variational in the orbitals; measured against finite
    #: differences in the tests), too much for many-body differences.
    conv_tol_grad: float = 1e-8
    #: Maximum SCF iterations.
    max_cycle: int = 100
    #: ``False``; ``True`` for density fitting of the SCF with PySCF's default auxiliary basis;
    #: or the name of an auxiliary basis (e.g. ``"def2-universal-jkfit"``).
    density_fitting: bool | str = False
    #: DFT integration grid level (0-9, PySCF's ``grids.level``).
    grid_level: int = 3
    #: Freeze core orbitals in MP2/CCSD/CCSD(T) (PySCF's chemical core, real atoms only).
    frozen_core: bool = False
    #: SCF level shift (Eh), a common remedy for SCF that does not converge.
    level_shift: float = 0.0
    #: SCF initial guess (``"minao"``, ``"atom"``, ``"huckel"``, ``"1e"``, ...).
    init_guess: str = "minao"
    #: Cartesian (``True``) instead of spherical (``False``) basis functions.
    cartesian: bool = False
    #: CCSD amplitude convergence (Eh).
    cc_conv_tol: float = 1e-9
    #: PySCF's verbosity for the captured output (0 silent ... 9 debug).
    verbose: int = 4
    #: ``"cpu"``, ``"gpu"`` (gpu4pyscf on a CUDA GPU) or ``"auto"`` (the GPU where this worker has one and
    #: gpu4pyscf runs the calculation, else the CPU). Either device gives the same number.
    device: str = "cpu"
    #: What ``device="gpu"`` does with a calculation gpu4pyscf cannot run (CCSD, MP2 gradients, ...):
    #: ``"cpu"`` runs it on the CPU and says so in ``extras["pyscf"]["device_note"]``; ``"refuse"`` is an InputError.
    gpu_unsupported: str = "cpu"

    @classmethod
    def from_keywords(cls, keywords: Mapping[str, Any]) -> PySCFOptions:
        known = {f.name: f for f in fields(cls)}
        lowered = {str(k).lower(): v for k, v in keywords.items()}
        unknown = sorted(set(lowered) - set(known))
        if unknown:
            raise InputError(f"Unknown PySCF keyword(s) {unknown}. Known keywords: {sorted(known)}.")
        values = {}
        for name, value in lowered.items():
            values[name] = _coerce(name, value, known[name].default)
        options = cls(**values)
        for name, (low, high, meaning) in RANGES.items():
            value = getattr(options, name)
            if not (low <= value <= high):  # also refuses NaN
                raise InputError(f"PySCF keyword {name}={value!r}: {meaning}.")
        if options.reference is not None and options.reference not in REFERENCES:
            raise InputError(f"PySCF keyword reference={options.reference!r}: expected one of {REFERENCES}.")
        for name, choices in (("device", DEVICES), ("gpu_unsupported", GPU_UNSUPPORTED)):
            if getattr(options, name) not in choices:
                raise InputError(f"PySCF keyword {name}={getattr(options, name)!r}: expected one of {choices}.")
        return options


#: What PySCF would take without a word but cannot compute with (max_cycle -5 "did not converge in -5 cycles").
RANGES = {
    "conv_tol": (1e-16, 1.0, "the SCF energy threshold must be a positive number in Eh (e.g. 1e-10)"),
    "conv_tol_grad": (1e-16, 1.0, "the SCF gradient threshold must be a positive number (e.g. 1e-8)"),
    "max_cycle": (1, 100_000, "the SCF needs at least 1 iteration (default 100; 200 for hard cases)"),
    "grid_level": (0, 9, "PySCF's DFT grid levels are 0 to 9 (default 3)"),
    "level_shift": (0.0, 10.0, "a level shift is 0 or a positive number of Eh (e.g. 0.2)"),
    "cc_conv_tol": (1e-16, 1.0, "the CCSD threshold must be a positive number in Eh (e.g. 1e-9)"),
    "verbose": (0, 9, "PySCF's verbosity is 0 (silent) to 9 (debug)"),
}


def _coerce(name: str, value: Any, default: Any) -> Any:
    """Check one keyword's type against its default's; a wrong type is an InputError."""
    if name in ("reference", "device", "gpu_unsupported"):
        if not isinstance(value, str):
            raise InputError(f"PySCF keyword {name} must be a string, got {value!r}.")
        return value.lower()
    if name == "density_fitting":
        if isinstance(value, (bool, str)):
            return value
        raise InputError(f"PySCF keyword density_fitting must be true/false or an auxiliary basis name, got {value!r}.")
    expected = type(default)
    if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if expected is bool and isinstance(value, bool):
        return value
    if expected is str and isinstance(value, str):
        return value
    raise InputError(f"PySCF keyword {name} must be of type {expected.__name__}, got {value!r}.")
