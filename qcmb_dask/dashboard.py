"""The live page's old module name: ``qcmb_dask.dashboard`` in ``distributed.scheduler.http.routes`` keeps working.

The page lives in :mod:`qcmb_dask.diagnostics.page`.
"""

from qcmb_dask.diagnostics.page import routes  # noqa: F401
