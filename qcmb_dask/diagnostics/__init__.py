"""The diagnostics floor: what the user sees, never a result. The run log, the terminal and notebook displays,
the live page the scheduler serves (``page``, ``run_events``, ``templates/``), plots and the HTML report.

The page's modules import no client code: the scheduler loads them by name (``tests/test_layers.py`` checks).
"""
