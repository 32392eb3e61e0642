"""Geometry optimizations whose every energy and gradient is one qcmb_dask graph (client side).

:mod:`.geometric_driver` runs geomeTRIC on a gradient function, :mod:`.journal` keeps each finished step in
the result store so that a restarted optimization resumes, and :mod:`.run` is ``qcmb_dask.optimize``: one
cluster session for all the steps.
"""
