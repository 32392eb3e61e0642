"""Running a run, on whatever cluster a backend connected to: set up once (:mod:`.run`), the graph streamed to
the scheduler and its fragments, levels and outcome gathered (:mod:`.sessions`), fragment events dispatched per
run (:mod:`.subscriptions`). Client side; knows no kind of cluster: :mod:`qcmb_dask.clusters` does.
"""
