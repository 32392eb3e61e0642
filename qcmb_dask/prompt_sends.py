"""The scheduler preload's old name: ``--preload qcmb_dask.prompt_sends`` in a site's config keeps working, with a
FutureWarning in the scheduler's log that says what to write instead.

The preload lives in :mod:`qcmb_dask.clusters.preload`.
"""

import warnings

from qcmb_dask.clusters.preload import dask_setup  # noqa: F401

warnings.warn(
    "qcmb_dask.prompt_sends is the old name of qcmb_dask.clusters.preload: put qcmb_dask.clusters.preload in "
    "distributed.scheduler.preload (or dask scheduler --preload) instead.",
    FutureWarning,
    stacklevel=2,
)
