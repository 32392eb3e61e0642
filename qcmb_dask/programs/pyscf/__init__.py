"""PySCF as a QCEngine program: ``qcengine.compute(input, "pyscf")`` once it is registered, which ``compute`` and
``plan`` do, and ``qcmb_dask.programs.register_shipped()`` does on its own (importing qcmb_dask registers nothing)."""

from .harness import PySCFHarness
from .methods import SUPPORTED_DRIVERS
from .options import PySCFOptions

__all__ = ["SUPPORTED_DRIVERS", "PySCFHarness", "PySCFOptions"]
