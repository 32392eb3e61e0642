"""``from qcmb_dask.v2 import ManyBodyComputer``: the drop-in for ``qcmanybody.v2.ManyBodyComputer``."""

from qcmb_dask.computer import ManyBodyComputerV2 as ManyBodyComputer

__all__ = ["ManyBodyComputer"]
