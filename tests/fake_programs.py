"""Test-only QCEngine programs: PySCF underneath, with injected failures. Importable by worker processes."""

from typing import Any, ClassVar, Dict

from qcengine.exceptions import ConvergenceError

from qcmb_dask.programs.pyscf import PySCFHarness


class DimersFailHarness(PySCFHarness):
    """PySCF, except that every calculation with exactly two real molecules of water fails to converge."""

    _defaults: ClassVar[Dict[str, Any]] = {**PySCFHarness._defaults, "name": "dimers-fail"}

    def compute(self, input_data, config):
        nreal = sum(input_data.molecule.real) // 3
        if nreal == 2:
            raise ConvergenceError("injected: this dimer never converges")
        return super().compute(input_data, config)
