"""The scheduler preload's old name: ``--preload qcmb_dask.prompt_sends`` in a site's config keeps working.

The preload lives in :mod:`qcmb_dask.clusters.preload`.
"""

from qcmb_dask.clusters.preload import dask_setup  # noqa: F401
