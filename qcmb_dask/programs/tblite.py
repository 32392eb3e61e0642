"""The QCEngine ``ProgramHarness`` named ``"tblite"``: GFN2-xTB, GFN1-xTB and IPEA1-xTB energies and gradients
through tblite's Python API (``pip install tblite``). Milliseconds per water: the cheap method a screened
expansion can run on every candidate k-mer before the expensive one runs on those it keeps.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import numpy as np
from qcelemental.models.v2 import AtomicInput, AtomicResult, Provenance
from qcelemental.util import which_import
from qcengine.config import TaskConfig
from qcengine.exceptions import ConvergenceError, InputError
from qcengine.programs.model import ProgramHarness

#: method names (any case) -> tblite's
METHODS = {"gfn2-xtb": "GFN2-xTB", "gfn1-xtb": "GFN1-xTB", "ipea1-xtb": "IPEA1-xTB"}
#: the heaviest element tblite's GFN parametrizations cover
LAST_ELEMENT = 86
#: Boltzmann's constant in Eh / K (tblite takes the electronic temperature in Eh)
KELVIN_TO_HARTREE = 3.166808578545117e-6


@dataclass(frozen=True)
class TBLiteOptions:
    """Keywords understood by the ``tblite`` harness; an unknown one is an ``InputError``."""

    #: tblite's numerical accuracy, smaller is tighter: 100 times its own default (1.0), since many-body increments
    #: are small differences of large energies
    accuracy: float = 0.01
    #: the most self-consistent-charge iterations
    max_iterations: int = 250
    #: the SCC mixer's damping (tblite's default 0.4; smaller helps a calculation that does not converge)
    mixer_damping: float = 0.4
    #: electronic temperature in K, for the Fermi smearing of occupations (GFN-xTB's 300 K)
    electronic_temperature: float = 300.0

    @classmethod
    def from_keywords(cls, keywords: Mapping[str, Any]) -> TBLiteOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(keywords) - known)
        if unknown:
            raise InputError(f"tblite harness: unknown keyword(s) {unknown}; it understands {sorted(known)}.")
        options = cls(**dict(keywords))
        for name, positive in (("accuracy", True), ("mixer_damping", True), ("electronic_temperature", False)):
            value = getattr(options, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or (positive and not value):
                raise InputError(f"tblite harness: {name} must be a {'positive' if positive else 'non-negative'} "
                                 f"number, got {value!r}.")  # fmt: skip
        if isinstance(options.max_iterations, bool) or not isinstance(options.max_iterations, int):
            raise InputError(f"tblite harness: max_iterations must be a whole number, got {options.max_iterations!r}.")
        if options.max_iterations < 1:
            raise InputError(f"tblite harness: max_iterations must be at least 1, got {options.max_iterations}.")
        return options


class TBLiteHarness(ProgramHarness):
    """GFN-xTB single points through tblite, in QCEngine's shape.

    Examples
    --------
    >>> import qcengine, qcmb_dask
    >>> qcmb_dask.programs.register_shipped()
    >>> result = qcengine.compute(atomic_input, "tblite")  # model {"method": "gfn2-xtb", "basis": None}
    """

    #: ``compute(..., escalate=True)``: tried once after a convergence failure (more iterations, a gentler mixer)
    escalation_keywords: ClassVar[dict[str, Any]] = {"max_iterations": 1000, "mixer_damping": 0.1}

    #: GFN-xTB's basis is tied to its atoms: no ghost atoms, so no counterpoise (refused while planning)
    ghost_atoms: ClassVar[bool] = False

    #: Bump when the harness changes how it computes: the result store then recomputes.
    REVISION: ClassVar[int] = 1

    _defaults: ClassVar[dict[str, Any]] = {
        "name": "tblite",
        "scratch": False,
        "thread_safe": False,  # the OpenMP thread count is process-wide
        "thread_parallel": True,
        "node_parallel": False,
        "managed_memory": False,
    }

    @staticmethod
    def found(raise_error: bool = False) -> bool:
        return which_import(
            "tblite", return_bool=True, raise_error=raise_error, raise_msg="Please install via `pip install tblite`."
        )

    def get_version(self) -> str:
        self.found(raise_error=True)
        from importlib.metadata import version

        return version("tblite")

    def store_fingerprint(self) -> dict[str, Any]:
        """What this harness adds to every calculation, for the result store's key: its defaults, and tblite's
        version (a release may change a parametrization, and with it the numbers)."""
        return {
            "harness": "qcmb_dask.tblite",
            "revision": self.REVISION,
            "defaults": asdict(TBLiteOptions()),
            "tblite": self.get_version() if self.found() else None,
        }

    def check_request(
        self, method: str, basis: str, driver: str, keywords: dict, embedded: bool, elements: Sequence[str]
    ) -> None:
        """Refuse before anything runs what :meth:`compute` would refuse (QCEngine's InputError)."""
        TBLiteOptions.from_keywords(keywords)
        _method(method)
        _no_basis(basis, method)
        if driver not in ("energy", "gradient", "hessian"):
            raise InputError(f"tblite harness: driver {driver!r}; it computes energies and gradients (Hessians "
                             "from gradients).")  # fmt: skip
        if embedded:
            raise InputError("tblite harness: embedding point charges are not supported; run the embedded "
                             "expansion with PySCF.")  # fmt: skip
        from qcelemental import periodictable

        heavy = sorted({e for e in elements if periodictable.to_Z(e) > LAST_ELEMENT})
        if heavy:
            raise InputError(f"tblite harness: GFN-xTB covers elements up to Rn (Z = 86), not {heavy}.")

    def analytic_hessian(self, method: str, keywords: dict) -> bool:
        """tblite gives energies and gradients: qcmb_dask differentiates the gradients for a Hessian."""
        return False

    def compute(self, input_data: AtomicInput, config: TaskConfig) -> AtomicResult:
        self.found(raise_error=True)
        from tblite.exceptions import TBLiteRuntimeError, TBLiteValueError
        from tblite.interface import Calculator
        from threadpoolctl import threadpool_limits

        spec = input_data.specification
        driver = spec.driver.value if hasattr(spec.driver, "value") else str(spec.driver)
        if driver not in ("energy", "gradient"):
            raise InputError(f"tblite harness computes energies and gradients, not {driver!r} (qcmb_dask makes a "
                             "Hessian from displaced gradients).")  # fmt: skip
        method = _method(spec.model.method)
        _no_basis(spec.model.basis, spec.model.method)
        options = TBLiteOptions.from_keywords(spec.keywords)
        molecule = input_data.molecule
        if molecule.real is not None and not all(molecule.real):
            raise InputError("tblite harness: GFN-xTB has no basis functions to place on ghost atoms; use "
                             "bsse_type 'nocp' (counterpoise, cp and vmfc, needs them).")  # fmt: skip
        charge = float(molecule.molecular_charge)
        if abs(charge - round(charge)) > 1e-8:
            raise InputError(f"tblite harness needs an integer molecular charge, got {charge}.")
        numbers = np.asarray(molecule.atomic_numbers, dtype=int)
        positions = np.asarray(molecule.geometry, dtype=float).reshape(-1, 3)  # Bohr, as tblite takes them
        start = time.time()
        with threadpool_limits(limits=max(1, int(config.ncores or 1))):
            try:
                calculator = Calculator(
                    method, numbers, positions, charge=round(charge), uhf=int(molecule.molecular_multiplicity) - 1
                )
                calculator.set("verbosity", 0)
                calculator.set("accuracy", float(options.accuracy))
                calculator.set("max-iter", int(options.max_iterations))
                calculator.set("mixer-damping", float(options.mixer_damping))
                calculator.set("temperature", options.electronic_temperature * KELVIN_TO_HARTREE)
                result = calculator.singlepoint()
            except TBLiteValueError as err:
                raise InputError(f"tblite refused the calculation: {err}") from err
            except TBLiteRuntimeError as err:
                if "converge" in str(err).lower():
                    raise ConvergenceError(f"tblite: {err}") from err
                raise InputError(f"tblite could not run the calculation: {err}") from err
        energy = float(result.get("energy"))
        gradient = np.asarray(result.get("gradient"), dtype=float) if driver == "gradient" else None
        properties: dict[str, Any] = {"calcinfo_natom": len(numbers), "return_energy": energy}
        if gradient is not None:
            properties["return_gradient"] = gradient
        return AtomicResult(
            input_data=input_data,
            molecule=molecule,
            properties=properties,
            return_result=energy if gradient is None else gradient,
            stdout=None,
            success=True,
            provenance=Provenance(creator="tblite", version=self.get_version(), routine="qcmb_dask.programs.tblite"),
            extras={"tblite": {"method": method, "wall_time": time.time() - start}},
        )


def _method(method: str) -> str:
    name = METHODS.get(str(method).lower())
    if name is None:
        raise InputError(f"tblite harness: method {method!r}; it runs {', '.join(METHODS)} (any case).")
    return name


def _no_basis(basis: str | None, method: str) -> None:
    if basis:
        raise InputError(f"tblite harness: {method} carries its own minimal basis; leave the model's basis empty "
                         f"(None or \"\"), not {basis!r}.")  # fmt: skip
