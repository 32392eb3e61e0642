"""qcmb_dask: many-body expansions as Dask task graphs, with QCManyBody's answer.

Importing the package registers the PySCF program with QCEngine and loads the ``qcmb_dask``
defaults into ``dask.config``.
"""

from importlib.metadata import PackageNotFoundError, version

from . import config as _config  # noqa: F401  loads defaults into dask.config
from . import plots
from .analysis import LevelResult, PartialResult
from .api import build_graph, compute, job_script, plan, timeline
from .batch import JobsRefused, WorkersNeverArrived
from .computer import ManyBodyComputer
from .errors import FragmentError, FragmentsFailed
from .plan import FragmentTask, Plan
from .programs import register_shipped as _register_shipped_programs
from .store import ResultStore, StoreWarning

try:
    __version__ = version("qcmb_dask")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

_register_shipped_programs()

__all__ = [
    "FragmentError",
    "FragmentsFailed",
    "JobsRefused",
    "FragmentTask",
    "LevelResult",
    "ManyBodyComputer",
    "PartialResult",
    "Plan",
    "ResultStore",
    "StoreWarning",
    "WorkersNeverArrived",
    "build_graph",
    "compute",
    "job_script",
    "plan",
    "plots",
    "timeline",
]
