"""The worker floor: what runs on Dask workers. One fragment through QCEngine, the level and final analysis,
the fragment events, the timeout timer.

Imports only leaves (``errors``, ``keys``, ``store``, ``qcmanybody_adapter``, ``programs``): a worker that
unpickles a task loads no client code (``tests/test_layers.py`` checks).
"""
