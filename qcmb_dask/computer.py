"""``qcmb_dask.ManyBodyComputer``: QCManyBody's entry point, run as a task graph. Switching is one import."""

from __future__ import annotations

from qcmb_dask.api import compute


class ManyBodyComputer:
    """Drop-in for ``qcmanybody.ManyBodyComputer.from_manybodyinput``.

    Examples
    --------
    >>> from qcmb_dask import ManyBodyComputer
    >>> result = ManyBodyComputer.from_manybodyinput(mbin, parallel=True, n_workers=2)   # doctest: +SKIP
    """

    @classmethod
    def from_manybodyinput(cls, input_model, parallel: bool = True, n_workers: int | None = None, **compute_options):
        """Run ``input_model`` on an embedded LocalCluster (``parallel=True``) or in-process (``parallel=False``)."""
        cluster = compute_options.pop("cluster", None) if parallel else "sync"
        return compute(input_model, cluster, n_workers=n_workers, **compute_options)
