"""Many runs on one cluster: runs at once on one Client, overlapping submissions of one input, a Client whose
workers have two threads, and many inputs in one graph (compute_many)."""

import threading

import numpy as np
import pytest
from distributed import Client, LocalCluster

import qcmb_dask
from qcmb_dask.errors import InputsFailed

from .conftest import (
    BOHR_PER_ANGSTROM,
    NOCP,
    assert_same_result,
    entries,
    faulty_input,
    mbe_input,
    qcmanybody_reference,
)
from .fake_programs import FaultyHarness, ThreadSafeSleepyHarness, calls


def _in_threads(*calls_):
    """Run each () -> value at once in its own thread; their values (an exception is re-raised)."""
    results, errors = [None] * len(calls_), []

    def run(i, call):
        try:
            results[i] = call()
        except BaseException as err:  # noqa: BLE001 - handed to the test
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls_)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    if errors:
        raise errors[0]
    return results


def test_two_expansions_at_once_on_one_client(local_client):
    trimer, dimer = mbe_input(3, keywords=NOCP), mbe_input(2, keywords={"bsse_type": "cp"})
    seen = {"trimer": [], "dimer": []}

    def run(data, name):
        def progress(label, nbody, done, total):
            seen[name].append((done, total))

        return qcmb_dask.compute(data, cluster=local_client, progress=False, callback=progress)

    ours_trimer, ours_dimer = _in_threads(lambda: run(trimer, "trimer"), lambda: run(dimer, "dimer"))
    assert_same_result(ours_trimer, qcmanybody_reference(trimer))
    assert_same_result(ours_dimer, qcmanybody_reference(dimer))
    # each run counted its own fragments, all of them: 7 (nocp trimer) and 3 (cp dimer)
    assert seen["trimer"][-1] == (7, 7) and len(seen["trimer"]) == 7
    assert seen["dimer"][-1] == (3, 3) and len(seen["dimer"]) == 3
    timelines = qcmb_dask.timeline(ours_trimer), qcmb_dask.timeline(ours_dimer)
    assert [len(t) for t in timelines] == [7, 3]
    runs = [ours.extras["qcmb_dask"]["run_id"] for ours in (ours_trimer, ours_dimer)]
    assert runs[0] != runs[1]


def test_overlapping_submissions_of_one_input_keep_their_own_settings(local_client, tmp_path):
    """Same input, same Client, at the same time, with different stores and timeouts: each run's fragments
    ran with its own settings (before run ids in keys, the second run's nodes were the first run's)."""
    harness = FaultyHarness(extras={"sleep": 0.3})
    data = faulty_input(3)
    first, second = tmp_path / "first", tmp_path / "second"
    results = _in_threads(
        lambda: qcmb_dask.compute(data, cluster=local_client, harnesses=[harness], cache=first, progress=False),
        lambda: qcmb_dask.compute(
            data, cluster=local_client, harnesses=[harness], cache=second, timeout_per_task=600, progress=False
        ),
    )
    for root in (first, second):
        assert len(entries(root)) == 7
    assert all(r.extras["qcmb_dask"]["computed"] + r.extras["qcmb_dask"]["from_store"] == 7 for r in results)
    assert [r.extras["qcmb_dask"]["store"] for r in results] == [str(first), str(second)]
    assert [len(qcmb_dask.timeline(r)) for r in results] == [7, 7]  # each run counted its own seven
    assert len({r.extras["qcmb_dask"]["run_id"] for r in results}) == 2
    assert results[0].return_result == pytest.approx(results[1].return_result, abs=1e-10)


def test_a_client_with_two_threads_per_worker_runs_one_pyscf_fragment_per_process(capfd):
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        data = mbe_input(3, keywords=NOCP)
        result = qcmb_dask.compute(data, cluster=client, progress=True)
    assert_same_result(result, qcmanybody_reference(data))
    spans = sorted((r["start"], r["stop"]) for r in qcmb_dask.timeline(result))
    assert len(spans) == 7
    assert all(after[0] >= before[1] for before, after in zip(spans, spans[1:])), spans
    err = capfd.readouterr().err
    assert "its workers have up to 2 threads" in err and "--nthreads 1" in err


def _scan(n):
    """The nocp trimer with its third water moved away from the dimer in ``n`` steps of 0.1 Å."""
    frames = []
    for step in range(n):
        data = mbe_input(3, keywords=NOCP, program="faulty")
        geometry = np.array(data["molecule"]["geometry"]).reshape(-1, 3)
        geometry[6:9, 2] += 0.1 * step * BOHR_PER_ANGSTROM
        data["molecule"]["geometry"] = geometry.ravel().tolist()
        frames.append(data)
    return frames


@pytest.mark.slow
def test_compute_many_runs_a_scan_computing_each_calculation_once(local_client, tmp_path, capfd):
    frames = _scan(20)
    bad = _scan(1)[0]
    geometry = np.array(bad["molecule"]["geometry"]).reshape(-1, 3)
    geometry[6:9] = geometry[0:3] + 0.01  # the third water on top of the first
    bad["molecule"]["geometry"] = geometry.ravel().tolist()
    inputs = [*frames[:7], bad, *frames[7:]]
    log = tmp_path / "calls.log"
    harness = FaultyHarness(extras={"log": str(log)})
    progress = []

    with pytest.raises(InputsFailed) as failed:
        qcmb_dask.compute_many(
            inputs,
            cluster=local_client,
            harnesses=[harness],
            progress=True,
            callback=lambda label, nbody, done, total: progress.append((done, total)),
        )
    # monomers 1 and 2 and their dimer are the same in every frame: 3 + 20 x (1 monomer + 2 dimers + trimer)
    assert calls(log) == 3 + 20 * 4
    assert progress[-1] == (83, 83) and len(progress) == 83
    assert list(failed.value.failures) == [7]
    assert "input 8: Invalid many-body input: molecule.geometry" in str(failed.value)
    results = failed.value.results
    assert results[7] is None
    err = capfd.readouterr().err
    assert "input 21 of 21" in err or "of 21" in err

    separate = [qcmb_dask.compute(frame, cluster=local_client, harnesses=[harness], progress=False) for frame in frames]
    together = [r for i, r in enumerate(results) if i != 7]
    for ours, alone in zip(together, separate):
        assert_same_result(ours, alone)
    assert len({round(r.return_result, 9) for r in together}) == 20  # a scan: every frame its own energy
    assert all(len(qcmb_dask.timeline(r)) == 7 for r in together)  # each frame's seven, shared ones included


def test_a_worker_with_four_threads_runs_its_first_fragments_at_once():
    """Four threads of a fresh worker process start QCEngine at once: each waits for one description of the
    machine (QCEngine fills it unlocked; before, most of them failed with KeyError 'cpu_brand')."""
    harness = ThreadSafeSleepyHarness(extras={"sleep": 0.2})
    data = mbe_input(3, keywords=NOCP, program="sleepy-threads")
    with (
        LocalCluster(n_workers=1, threads_per_worker=4, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        result = qcmb_dask.compute(data, cluster=client, harnesses=[harness], progress=False)
    assert result.properties.calcinfo_nmbe == 7
    spans = sorted((r["start"], r["stop"]) for r in qcmb_dask.timeline(result))
    assert any(after[0] < before[1] for before, after in zip(spans, spans[1:])), "fragments ran side by side"
