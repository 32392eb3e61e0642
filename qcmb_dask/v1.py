"""``from qcmb_dask.v1 import ManyBodyComputer``: the drop-in for ``qcmanybody.v1.ManyBodyComputer``."""

from qcmb_dask.computer import ManyBodyComputerV1 as ManyBodyComputer

__all__ = ["ManyBodyComputer"]
