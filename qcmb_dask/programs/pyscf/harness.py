"""The QCEngine ``ProgramHarness`` named ``"pyscf"``."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any, ClassVar

from qcelemental.models.v2 import AtomicInput, AtomicResult, Provenance
from qcelemental.util import which_import
from qcengine.config import TaskConfig
from qcengine.exceptions import InputError, ResourceError
from qcengine.programs.model import ProgramHarness

from . import gpu, methods
from .molecule import build_mole, check_basis, embedding_charges
from .options import DEVICE_KEYWORDS, PySCFOptions


class PySCFHarness(ProgramHarness):
    """Run HF, DFT, MP2, CCSD and CCSD(T) energies and derivatives in PySCF through QCEngine.

    Examples
    --------
    >>> import qcengine, qcmb_dask  # importing qcmb_dask registers "pyscf"
    >>> result = qcengine.compute(atomic_input, "pyscf", task_config={"ncores": 2, "memory": 4})
    """

    #: ``compute(..., escalate=True)``: tried once after a convergence failure. More cycles and a level shift,
    #: which changes the path to the solution, not the converged energy. (Not the "atom" guess: with ghost
    #: atoms PySCF takes a deprecated linear-dependency path for it.)
    escalation_keywords: ClassVar[dict[str, Any]] = {"max_cycle": 200, "level_shift": 0.2}

    #: Bump when the harness changes how it computes (not only its keyword defaults): the result store then
    #: recomputes instead of serving numbers from the earlier harness.
    REVISION: ClassVar[int] = 1

    _defaults: ClassVar[dict[str, Any]] = {
        "name": "pyscf",
        "scratch": False,
        "thread_safe": False,  # PySCF's thread count is process-wide
        "thread_parallel": True,
        "node_parallel": False,
        "managed_memory": True,
    }

    @staticmethod
    def found(raise_error: bool = False) -> bool:
        return which_import(
            "pyscf", return_bool=True, raise_error=raise_error, raise_msg="Please install via `pip install pyscf`."
        )

    def get_version(self) -> str:
        self.found(raise_error=True)
        import pyscf

        return pyscf.__version__

    def store_fingerprint(self) -> dict[str, Any]:
        """What this harness adds to every calculation, for the result store's key."""
        defaults = {name: value for name, value in asdict(PySCFOptions()).items() if name not in DEVICE_KEYWORDS}
        return {"harness": "qcmb_dask.pyscf", "revision": self.REVISION, "defaults": defaults}

    #: the keyword ``device`` may name a GPU: qcmb_dask places this harness's fragments on CPU or GPU workers
    devices: ClassVar[tuple[str, ...]] = ("cpu", "gpu")

    def gpu_unsupported(self, method: str, driver: str, keywords: dict, embedded: bool) -> str | None:
        """Why gpu4pyscf cannot run this calculation (a method, driver or reference it lacks), or None."""
        options = PySCFOptions.from_keywords(keywords)
        family = methods.method_family(method)
        return gpu.unsupported(family, driver, options.reference, embedded, options.density_fitting)

    @staticmethod
    def gpu_unavailable() -> str | None:
        """Why this process cannot run PySCF on a GPU (no CUDA device, gpu4pyscf not installed: the package for
        the CUDA version found), or None."""
        return gpu.unavailable()

    def store_keywords(self, method: str, keywords: dict) -> dict:
        """The keywords that decide the number, for the result store's key.

        ``device`` and ``gpu_unsupported`` do not (both devices are pinned to the same settings). DF-MP2 is
        marked ``mp2_auxbasis="ri"``: before the pin it used the SCF's JK-fit basis, a different number.
        """
        kept = {key: value for key, value in keywords.items() if str(key).lower() not in DEVICE_KEYWORDS}
        try:
            density_fitted = PySCFOptions.from_keywords(keywords).density_fitting
            family = methods.method_family(method)
        except InputError:  # refused elsewhere; the key only has to be stable
            return kept
        if family == "mp2" and density_fitted:
            kept["mp2_auxbasis"] = "ri"
        return kept

    def check_request(
        self, method: str, basis: str, driver: str, keywords: dict, embedded: bool, elements: Sequence[str]
    ) -> None:
        """Refuse, before anything runs, what :meth:`compute` would refuse: unknown keywords or methods,
        drivers a method lacks, a basis set PySCF lacks for an element (raises QCEngine's InputError)."""
        options = PySCFOptions.from_keywords(keywords)
        if not basis:
            raise InputError('PySCF needs a basis set: give specification.model.basis (e.g. "6-31g").')
        family = methods.method_family(method)
        methods.check_supported(family, driver, method, embedded)
        check_basis(basis, elements)
        # Whether gpu4pyscf is installed is not checked here: the client planning this has no GPU at a site.
        if options.device == "gpu" and options.gpu_unsupported == "refuse":
            why = gpu.unsupported(family, driver, options.reference, embedded, options.density_fitting)
            if why:
                raise InputError(_refusal(method, driver, why))

    def analytic_hessian(self, method: str, keywords: dict) -> bool:
        """PySCF has analytic Hessians for HF and DFT, gradients only for MP2 and CCSD (qcmb_dask differentiates
        those gradients for a Hessian)."""
        return "hessian" in methods.SUPPORTED_DRIVERS[methods.method_family(method)]

    def compute(self, input_data: AtomicInput, config: TaskConfig) -> AtomicResult:
        self.found(raise_error=True)
        from qcmb_dask import compat

        compat.diis_eigh_with_fallback()  # some machines' scipy LAPACK fails on DIIS matrices numpy's handles
        spec = input_data.specification
        options = PySCFOptions.from_keywords(spec.keywords)
        driver = spec.driver.value if hasattr(spec.driver, "value") else str(spec.driver)
        if driver not in ("energy", "gradient", "hessian"):
            raise InputError(f"PySCF harness supports drivers energy, gradient and hessian, not {driver!r}.")
        if not spec.model.basis:
            raise InputError("PySCF harness needs a basis set name in specification.model.basis.")

        ncores = max(1, int(config.ncores or 1))
        start = time.time()
        with _limited_threads(ncores):
            mol = build_mole(input_data.molecule, spec.model.basis, options, memory_gib=config.memory)
            charges = embedding_charges(input_data.molecule)
            device, device_note = _device(options, spec.model.method, driver, mol.spin, charges is not None)
            try:
                if device == "gpu":
                    with gpu.on_card():
                        outcome = methods.run(mol, spec.model.method, driver, options, charges, on_gpu=True)
                else:
                    outcome = methods.run(mol, spec.model.method, driver, options, charges)
            except MemoryError as err:
                raise ResourceError(f"PySCF ran out of memory (task memory {config.memory} GiB): {err}") from err
            threads_seen = _thread_counts()
        wall_time = time.time() - start

        properties = dict(outcome.properties)
        properties["return_energy"] = outcome.energy
        if outcome.gradient is not None:
            properties["return_gradient"] = outcome.gradient
        if outcome.hessian is not None:
            properties["return_hessian"] = outcome.hessian
        extras: dict[str, Any] = {"threads": threads_seen, "wall_time": wall_time, "device": device}
        if device_note:
            extras["device_note"] = device_note
        return_result = {"energy": outcome.energy, "gradient": outcome.gradient, "hessian": outcome.hessian}[driver]

        return AtomicResult(
            input_data=input_data,
            molecule=input_data.molecule,
            properties=properties,
            return_result=return_result,
            stdout=mol.stdout.getvalue(),
            success=True,
            provenance=Provenance(creator="PySCF", version=self.get_version(), routine="qcmb_dask.programs.pyscf"),
            extras={"pyscf": extras},
        )


def _refusal(method: str, driver: str, why: str) -> str:
    return (
        f"PySCF on a GPU cannot run {method} {driver}: {why}. Run it on the CPU: keyword device='cpu' or 'auto', "
        "or gpu_unsupported='cpu' (such calculations then run on the worker's CPU)."
    )


def _device(options: PySCFOptions, method: str, driver: str, spin: int, embedded: bool) -> tuple[str, str | None]:
    """The device this fragment runs on, and a note where it is not the one asked for."""
    if options.device == "cpu":
        return "cpu", None
    reference = options.reference or ("rhf" if spin == 0 else "uhf")
    why = gpu.unsupported(methods.method_family(method), driver, reference, embedded, options.density_fitting)
    if why:
        if options.device == "gpu" and options.gpu_unsupported == "refuse":
            raise InputError(_refusal(method, driver, why))
        return "cpu", f"ran on the CPU: {why}"
    missing = gpu.unavailable()
    if missing is None:
        return "gpu", None
    if options.device == "auto":
        return "cpu", f"ran on the CPU (device='auto'): {missing}"
    raise InputError(f"PySCF keyword device='gpu' but {missing} Or use device='auto' or 'cpu'.")


class _limited_threads:
    """Give PySCF (OpenMP) and numpy's BLAS exactly ``ncores`` threads, restoring them afterwards.

    QCEngine hands a task ``ncores``; PySCF alone would take every core of the node.
    """

    def __init__(self, ncores: int):
        self.ncores = ncores

    def __enter__(self) -> None:
        from pyscf import lib
        from threadpoolctl import threadpool_limits

        self._previous = lib.num_threads()
        self._limits = threadpool_limits(limits=self.ncores)
        lib.num_threads(self.ncores)

    def __exit__(self, *exc) -> None:
        from pyscf import lib

        lib.num_threads(self._previous)
        self._limits.restore_original_limits()


def _thread_counts() -> dict[str, int]:
    """The thread counts in force, recorded in the result so that tests and users can check them."""
    from pyscf import lib
    from threadpoolctl import threadpool_info

    counts = {"pyscf_openmp": int(lib.num_threads())}
    for pool in threadpool_info():
        counts[f"{pool['internal_api']}:{pool.get('prefix', '')}"] = int(pool["num_threads"])
    return counts
