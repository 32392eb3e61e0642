"""qcmb_dask: many-body expansions as Dask task graphs, with QCManyBody's answer.

Importing the package imports nothing else but :mod:`qcmb_dask.compat` (the standard library only, for the hook
that registers the QCEngine procedures once QCEngine is imported): each public name loads its module when first
used, so a worker that unpickles a fragment, or a scheduler that loads the live page, imports no client code.
The package is laid out by where code runs (see README, "How the code is laid out"):

- ``planning/`` (client, pure: no Dask): inputs, validation, the plan, the cost model;
- ``worker/`` (workers): one fragment through QCEngine, the analysis nodes, fragment events, the timeout timer;
- ``execution/`` (client): one ``Run`` set up once, the sessions that run its graph, fragment-event dispatch;
- ``clusters/`` (client): one backend per ``cluster=`` kind (a client and its resources), the batch systems'
  table, the scheduler preload;
- ``diagnostics/`` (client and the scheduler's page): progress, the run log, the live page, plots;
- leaves: ``options``, ``errors``, ``keys``, ``store``, ``qcmanybody_adapter``, ``compat``; ``programs/``;
  ``api``, ``many_inputs``, ``optimization/`` and ``cli`` orchestrate.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from qcmb_dask import compat

try:
    __version__ = version("qcmb_dask")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

#: public name -> the module that defines it
_PUBLIC = {
    "build_graph": "qcmb_dask.api",
    "compute": "qcmb_dask.api",
    "compute_many": "qcmb_dask.many_inputs",
    "job_script": "qcmb_dask.api",
    "optimize": "qcmb_dask.optimization.run",
    "frequencies": "qcmb_dask.vibrations",
    "Frequencies": "qcmb_dask.vibrations",
    "plan": "qcmb_dask.api",
    "progress_in_store": "qcmb_dask.api",
    "timeline": "qcmb_dask.api",
    "ManyBodyComputer": "qcmb_dask.computer",
    "load_result": "qcmb_dask.diagnostics.results",
    "table": "qcmb_dask.diagnostics.results",
    "manybody_input": "qcmb_dask.planning.inputs",
    "close": "qcmb_dask.clusters.shared",
    "FragmentError": "qcmb_dask.errors",
    "FragmentsFailed": "qcmb_dask.errors",
    "InputsFailed": "qcmb_dask.errors",
    "InvalidArgument": "qcmb_dask.errors",
    "OptimizationNotConverged": "qcmb_dask.errors",
    "InvalidInput": "qcmb_dask.errors",
    "InputWarning": "qcmb_dask.errors",
    "JobsRefused": "qcmb_dask.errors",
    "SchedulerLost": "qcmb_dask.errors",
    "StoreWarning": "qcmb_dask.errors",
    "WorkersNeverArrived": "qcmb_dask.errors",
    "FragmentTask": "qcmb_dask.planning.plan",
    "Plan": "qcmb_dask.planning.plan",
    "LevelResult": "qcmb_dask.worker.analysis",
    "PartialResult": "qcmb_dask.worker.analysis",
    "ResultStore": "qcmb_dask.store",
}
#: public modules reached as attributes (``qcmb_dask.plots.timeline(...)``)
_MODULES = {
    "plots": "qcmb_dask.diagnostics.plots",
    "programs": "qcmb_dask.programs",
    "v1": "qcmb_dask.v1",
    "v2": "qcmb_dask.v2",
}


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
    elif name in _MODULES:
        value = import_module(_MODULES[name])
    else:
        raise AttributeError(f"module 'qcmb_dask' has no attribute {name!r}")
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__():
    return sorted([*globals(), *_PUBLIC, *_MODULES])


__all__ = sorted([*_PUBLIC, *_MODULES])


def _register_procedure() -> None:
    try:
        import_module("qcmb_dask.procedure").register()
    except Exception as err:  # noqa: BLE001 - QCEngine must import whatever happens here
        import warnings

        warnings.warn(f"qcmb_dask: the QCEngine procedure 'qcmb_dask' could not be registered: {err}", stacklevel=2)


# The procedures are registered where QCEngine is used, and importing qcmb_dask imports no QCEngine of its own.
compat.after_import("qcengine", _register_procedure)
