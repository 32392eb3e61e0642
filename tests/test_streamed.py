"""Streamed submission and the analysis as a tree, on real clusters: the scheduler never holds the whole graph, the
answer is QCManyBody's, and fragments Dask gives up on fail alone, batch by batch."""

from __future__ import annotations

import dask
import pytest
from distributed.diagnostics.plugin import SchedulerPlugin

import qcmb_dask
from qcmb_dask.errors import FragmentsFailed
from qcmb_dask.store import ResultStore

from .conftest import assert_same_result, faulty_input, mbe_input, qcmanybody_reference, two_worker_client, water_grid
from .fake_programs import FaultyHarness, SleepyHarness, calls


class GraphWatch(SchedulerPlugin):
    """Counts the graphs the scheduler receives and the most fragment tasks it knew at once."""

    name = "qcmb-test-graph-watch"

    def __init__(self):
        self.graphs = 0
        self.most = 0

    async def start(self, scheduler):
        self.scheduler = scheduler

    def update_graph(self, scheduler, **kwargs):
        self.graphs += 1
        self._count()

    def transition(self, key, start, finish, *args, **kwargs):
        if finish == "processing":
            self._count()

    def _count(self):
        tasks = self.scheduler.tasks
        self.most = max(self.most, sum(1 for key in tasks if str(key).startswith("fragment-")))


def _watched(dask_scheduler):
    plugin = dask_scheduler.plugins[GraphWatch.name]
    return plugin.graphs, plugin.most


def test_the_scheduler_never_holds_the_whole_graph():
    data = mbe_input(2, keywords={"bsse_type": "nocp", "max_nbody": 2}, program="sleepy")
    data["molecule"] = water_grid(12)
    harness = SleepyHarness(extras={"sleep": 0.01})
    qcmb_dask.programs.register([harness])
    n = len(qcmb_dask.plan(data))  # 12 monomers + 66 dimers
    settings = {"qcmb_dask.stream.batch-size": 5, "qcmb_dask.stream.ahead": 1}
    with dask.config.set(settings), two_worker_client() as client:
        client.register_plugin(GraphWatch())
        result = qcmb_dask.compute(data, client, harnesses=[harness], progress=False)
        graphs, most = client.run_on_scheduler(_watched)
    assert result.properties.calcinfo_nmbe == n == 78
    # the window, max(2 batches, 1 x 2 threads) = 10 unfinished calculations; a batch submitted below it; finished
    # fragments whose batch's sum is not yet in; a batch whose release is on its way to the scheduler
    assert most <= 10 + 3 * 5, f"the scheduler held {most} of {n} fragments at once"
    assert graphs >= n // 5, "submitted in batches"
    # -1 Eh per real atom: every increment above one body is zero
    assert result.properties.nocp_corrected_interaction_energy == pytest.approx(0.0, abs=1e-12)
    assert result.properties.nocp_corrected_total_energy == pytest.approx(-36.0, abs=1e-12)


@pytest.mark.parametrize("driver", ["energy", "gradient"])
def test_a_run_in_batches_of_two_equals_qcmanybody(local_client, driver):
    data = mbe_input(3, driver=driver, keywords={"bsse_type": ["cp", "nocp", "vmfc"]})
    with dask.config.set({"qcmb_dask.stream.batch-size": 2}):
        ours = qcmb_dask.compute(data, local_client, progress=False)
    assert_same_result(ours, qcmanybody_reference(data))


def test_a_fragment_lost_in_a_batch_fails_alone_and_the_rest_is_kept(tmp_path, reference):
    log = tmp_path / "calls.log"
    harness = FaultyHarness(extras={"log": str(log), "crash_nreal": 3})
    data = faulty_input()
    n = len(qcmb_dask.plan(data))
    settings = {"qcmb_dask.allowed-failures": 1, "qcmb_dask.stream.batch-size": 2}
    with dask.config.set(settings), pytest.raises(FragmentsFailed) as info:
        qcmb_dask.compute(data, harnesses=[harness], cache=tmp_path / "store", progress=False)
    [failure] = info.value.failures
    assert (failure.nbody, failure.error_type) == (3, "worker_lost")
    assert calls(log) == n - 1 + 2
    assert len(list(ResultStore(tmp_path / "store").entries())) == n - 1
    assert info.value.levels_done == [1, 2]
    with dask.config.set(settings):
        partial = qcmb_dask.compute(
            data, harnesses=[harness], cache=tmp_path / "store", on_error="partial", progress=False
        )
    assert partial.stats.from_store == n - 1 and partial.stats.computed == 0
    assert partial.level.interaction_energy("nocp") == pytest.approx(
        reference.properties.nocp_corrected_interaction_energy_through_2_body, abs=1e-9
    )


def test_a_sum_lost_with_its_worker_after_it_finished_is_computed_again(monkeypatch):
    """A worker dies holding a finished batch sum the client has not yet read (a slow client, a busy node): Dask
    marks the sum lost and computes it again; the run waits for it and the answer is QCManyBody's."""
    import os
    import signal
    import time

    from qcmb_dask.execution import streamed

    data = mbe_input(3, keywords={"bsse_type": "nocp"})
    read_first = streamed.Stream._sum_ended
    seen = []

    def worker_dies_first(self, state, future, completed):
        if not seen and future.status == "finished":
            [holder] = self.client.who_has([future])[future.key]
            pid = self.client.run(os.getpid, workers=[holder])[holder]
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while future.status != "lost" and time.monotonic() < deadline:
                time.sleep(0.05)
        seen.append(future.status)
        return read_first(self, state, future, completed)

    monkeypatch.setattr(streamed.Stream, "_sum_ended", worker_dies_first)
    with dask.config.set({"qcmb_dask.stream.batch-size": 2}), two_worker_client() as client:
        ours = qcmb_dask.compute(data, client, progress=False)
    assert seen[0] == "lost" and seen.count("lost") == 1, seen
    assert_same_result(ours, qcmanybody_reference(data))


def test_a_batch_sum_that_fails_with_every_fragment_done_fails_the_run(local_client):
    """Every fragment finished, but a result cannot be summed (a dimer's gradient has one atom): the sum is tried
    again and the run fails with its error, as a whole analysis would; never a result without that batch."""
    from .fake_programs import WrongShapeHarness

    data = mbe_input(3, driver="gradient", keywords={"bsse_type": "nocp"}, program="wrong-shape")
    with dask.config.set({"qcmb_dask.stream.batch-size": 2}), pytest.raises(ValueError, match="shape"):
        qcmb_dask.compute(data, local_client, harnesses=[WrongShapeHarness()], progress=False)


@pytest.mark.parametrize(
    "setting, value",
    [
        ("stream.batch-size", 0),
        ("stream.batch-size", 2.5),
        ("stream.batch-size", "many"),
        ("stream.ahead", 0.5),
        ("early-levels-tolerance", -1),
    ],
)
def test_stream_settings_are_refused_before_anything_starts(tmp_path, setting, value):
    from qcmb_dask.errors import InvalidArgument

    with dask.config.set({f"qcmb_dask.{setting}": value}), pytest.raises(InvalidArgument, match=setting):
        qcmb_dask.compute(mbe_input(2, keywords={"bsse_type": "nocp"}), cluster="local", cache=tmp_path)
    assert list(ResultStore(tmp_path).entries()) == []
