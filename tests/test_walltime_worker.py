"""A walltime-aware worker's decisions (:mod:`qcmb_dask.worker.walltime`), without a worker: the pace it measured,
what fits before its deadline, and what it does with a fragment no job could hold. The same worker on real
worker processes and on SLURM and SGE: tests/test_faults_on_workers.py, test_on_slurm.py, test_on_sge.py."""

import time

from qcmb_dask.worker.walltime import Walltime


def test_a_walltime_aware_worker_judges_by_the_pace_it_measured():
    keeper = Walltime(deadline=time.time() + 100, walltime_s=120, margin_s=10)
    assert keeper.fits(80) is None  # the estimate alone: 80 s of the 90 left
    keeper.measured(1.0, 30.0)  # a first fragment: imports and all, 30x its estimate, capped
    assert keeper.pace() == 2.0 and "needs about 160 s" in keeper.fits(80)
    for seconds in (1.1, 1.2, 1.0, 1.3, 1.1):
        keeper.measured(1.0, seconds)
    assert 1.2 <= keeper.pace() <= 1.3  # the upper decile of what it measured since
    assert keeper.fits(60) is None and "within the margin" not in keeper.fits(80)
    fresh = Walltime(deadline=time.time() + 100, walltime_s=120, margin_s=10)
    assert fresh.fits(500) is None  # longer than any job holds: a worker that ran nothing takes it
    assert fresh.fits(None) is None
    late = Walltime(deadline=time.time() + 5, walltime_s=120, margin_s=10)
    late.computed = 1
    assert "the worker is within the margin" in late.fits(1)


def test_the_other_workers_paces_count_one_number_each():
    keeper = Walltime(deadline=time.time() + 100, walltime_s=120, margin_s=10)
    keeper.run_paces = [3.0] * 9  # nine other workers found their fragments three times slower than estimated
    assert keeper.pace() == 3.0 and "needs about 90 s" in keeper.fits(30)
    keeper.measured(1.0, 1.0)  # its first: kept apart
    keeper.measured(1.0, 1.0)
    assert keeper.own_pace() == 1.0 and keeper.pace() == 3.0
