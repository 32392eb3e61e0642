"""PySCF as a QCEngine program: ``qcengine.compute(input, "pyscf")`` once ``qcmb_dask`` is imported."""

from .harness import PySCFHarness
from .methods import SUPPORTED_DRIVERS
from .options import PySCFOptions

__all__ = ["SUPPORTED_DRIVERS", "PySCFHarness", "PySCFOptions"]
