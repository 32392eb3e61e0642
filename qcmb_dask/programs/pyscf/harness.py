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

from . import methods
from .molecule import build_mole, check_basis, embedding_charges
from .options import PySCFOptions


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
        return {"harness": "qcmb_dask.pyscf", "revision": self.REVISION, "defaults": asdict(PySCFOptions())}

    def check_request(
        self, method: str, basis: str, driver: str, keywords: dict, embedded: bool, elements: Sequence[str]
    ) -> None:
        """Refuse, before anything runs, what :meth:`compute` would refuse: unknown keywords or methods,
        drivers a method lacks, a basis set PySCF lacks for an element (raises QCEngine's InputError)."""
        PySCFOptions.from_keywords(keywords)
        if not basis:
            raise InputError('PySCF needs a basis set: give specification.model.basis (e.g. "6-31g").')
        methods.check_supported(methods.method_family(method), driver, method, embedded)
        check_basis(basis, elements)

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
            try:
                outcome = methods.run(mol, spec.model.method, driver, options, embedding_charges(input_data.molecule))
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
        return_result = {"energy": outcome.energy, "gradient": outcome.gradient, "hessian": outcome.hessian}[driver]

        return AtomicResult(
            input_data=input_data,
            molecule=input_data.molecule,
            properties=properties,
            return_result=return_result,
            stdout=mol.stdout.getvalue(),
            success=True,
            provenance=Provenance(creator="PySCF", version=self.get_version(), routine="qcmb_dask.programs.pyscf"),
            extras={"pyscf": {"threads": threads_seen, "wall_time": wall_time}},
        )


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
