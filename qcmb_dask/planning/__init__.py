"""The planning floor: runs on the client, pure. Inputs, validation, the plan, the cost model and its history.

Imports no Dask and no distributed (``tests/test_layers.py`` checks): what a run will do is decided here,
before anything is submitted, and can be tested without a scheduler.
"""
