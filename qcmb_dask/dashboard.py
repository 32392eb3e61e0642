"""The live page's old module name: ``qcmb_dask.dashboard`` in ``distributed.scheduler.http.routes`` keeps working,
with a FutureWarning in the scheduler's log that says what to write instead.

The page lives in :mod:`qcmb_dask.diagnostics.page`.
"""

import warnings

from qcmb_dask.diagnostics.page import routes  # noqa: F401

warnings.warn(
    "qcmb_dask.dashboard is the old name of qcmb_dask.diagnostics.page: put qcmb_dask.diagnostics.page in "
    "distributed.scheduler.http.routes instead.",
    FutureWarning,
    stacklevel=2,
)
