"""For people who already use Dask: build_graph keeps compute's promises under client.compute, their own Dask
settings win, Dask's units are understood, and early levels come early when that costs little."""

import dask
import pytest
from click.testing import CliRunner

import qcmb_dask
from qcmb_dask.cli import main
from qcmb_dask.clusters.base import scheduler_settings, users_own
from qcmb_dask.options import Options, gibibytes, seconds
from qcmb_dask.planning import priorities

from .conftest import assert_same_result, entries, mbe_input, qcmanybody_reference
from .fake_programs import DimersFailHarness, UnregisteredHarness, calls


def test_client_compute_of_build_graph_stores_resumes_and_brings_its_harnesses(local_client, tmp_path):
    log, store = tmp_path / "calls.log", tmp_path / "store"
    harness = UnregisteredHarness(extras={"log": str(log)})
    data = mbe_input(3, keywords={"bsse_type": "nocp"}, program="never-registered")
    graph = qcmb_dask.build_graph(data, cache=store, harnesses=[harness])
    first = local_client.compute(graph).result()
    assert calls(log) == 7 and len(entries(store)) == 7  # each fragment stored as it finished
    reference = qcmanybody_reference(mbe_input(3, keywords={"bsse_type": "nocp"}))
    assert first.return_result == pytest.approx(reference.return_result, abs=1e-9)
    second = local_client.compute(qcmb_dask.build_graph(data, cache=store, harnesses=[harness])).result()
    assert calls(log) == 7  # resumed from the store: nothing computed again
    assert second.return_result == first.return_result


def test_build_graph_gives_each_fragment_the_running_workers_memory_share(local_client):
    from qcmb_dask.graph import build
    from qcmb_dask.worker.fragment import with_worker_memory_share

    # the job as build_graph makes it: no memory figure, so that the worker that runs it sizes it
    job = next(iter(build(qcmb_dask.plan(mbe_input(2)), task_config={"ncores": 1}).jobs.values()))
    shared = local_client.submit(with_worker_memory_share, job, pure=False).result().task_config["memory"]
    worker = next(iter(local_client.scheduler_info()["workers"].values()))
    assert shared == pytest.approx(0.8 * worker["memory_limit"] / worker["nthreads"] / 2**30, abs=0.01)
    assert qcmb_dask.build_graph(mbe_input(2), memory_per_task="3GiB") is not None


def test_build_graph_result_equals_qcmanybody_in_process():
    data = mbe_input(2, keywords={"bsse_type": ["cp", "nocp"]})
    assert_same_result(qcmb_dask.build_graph(data).compute(scheduler="sync"), qcmanybody_reference(data))


def test_the_users_own_distributed_settings_win_over_ours(monkeypatch):
    assert scheduler_settings()["distributed.scheduler.worker-saturation"] == 1.0  # ours, where the user said nothing
    saturation, failures = "distributed.scheduler.worker-saturation", "distributed.scheduler.allowed-failures"
    with dask.config.set({saturation: 1.2, failures: 9}):
        ours = scheduler_settings()
    assert saturation not in ours and failures not in ours
    # a site's or user's variable is theirs, even at Dask's own default value (3)
    assert not users_own("distributed.scheduler.allowed-failures")
    monkeypatch.setenv("DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES", "3")
    assert users_own("distributed.scheduler.allowed-failures")


def test_the_cli_leaves_unset_flags_to_the_dask_config(tmp_path):
    import json

    qcmb_dask.programs.register([DimersFailHarness()])
    failing = tmp_path / "failing.json"
    failing.write_text(json.dumps(mbe_input(3, keywords={"bsse_type": "nocp"}, program="dimers-fail")))
    with dask.config.set({"qcmb_dask.on-error": "partial"}):
        out = CliRunner().invoke(main, ["run", str(failing), "--cluster", "sync", "--no-cache", "-q"])
    assert out.exit_code == 1 and "complete through 1-body" in out.output  # partial, from the config
    out = CliRunner().invoke(main, ["run", str(failing), "--cluster", "sync", "--no-cache", "-q"])
    assert out.exit_code == 1 and "the run failed" in out.output  # the default, raise


@pytest.mark.parametrize("value, gib", [(4, 4.0), ("4GiB", 4.0), ("512MiB", 0.5), ("2.5", 2.5), ("8 GB", 8e9 / 2**30)])
def test_memory_as_dask_writes_it(value, gib):
    assert gibibytes(value, "memory_per_task") == pytest.approx(gib)


@pytest.mark.parametrize(
    "value, secs",
    [(90, 90.0), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0), ("01:30:00", 5400.0), ("1-00:00:00", 86400.0)],
)
def test_durations_as_dask_and_batch_systems_write_them(value, secs):
    assert seconds(value, "timeout_per_task") == secs


def test_strings_everywhere_api_config_cli_and_bad_ones_named():
    assert Options.from_call(memory_per_task="2GiB", timeout_per_task="1h").timeout_per_task == 3600
    with dask.config.set({"qcmb_dask.timeout-per-task": "00:10:00", "qcmb_dask.memory-per-task": "1GiB"}):
        options = Options.from_call()
    assert (options.timeout_per_task, options.memory_per_task) == (600, 1.0)
    with pytest.raises(qcmb_dask.InvalidArgument, match="timeout_per_task='soon'.*'2h'"):
        Options.from_call(timeout_per_task="soon")
    with pytest.raises(qcmb_dask.InvalidArgument, match="memory_per_task='lots'.*'4GiB'"):
        Options.from_call(memory_per_task="lots")
    out = CliRunner().invoke(main, ["job-script", "--cluster", "slurm", "--memory-per-task", "3GiB"])
    assert out.exit_code == 0, out.output


def test_the_large_graph_warning_is_ours_to_raise_unless_the_user_set_it():
    from qcmb_dask.execution.sessions import LARGE_GRAPH_THRESHOLD, large_graph_settings

    assert dask.utils.parse_bytes(large_graph_settings()[LARGE_GRAPH_THRESHOLD]) >= 2**30
    with dask.config.set({LARGE_GRAPH_THRESHOLD: "5MB"}):
        assert large_graph_settings() == {}


def test_cheap_low_levels_go_first_only_where_the_makespan_allows():
    # a uniform expansion (the hexamer's shape): levels 1 and 2 cost under half the work -> they go first
    uniform = {1: [0.2] * 6, 2: [2.2] * 36, 3: [2.1] * 40}
    assert priorities.levels_first(uniform, 2) == 2
    # CCSD(T) monomers dominate: running them first is longest-first anyway
    multilevel = {1: [30.0] * 3, 2: [0.5] * 6, 3: [0.3] * 7}
    assert priorities.levels_first(multilevel, 2) == 2
    # one huge fragment at the top level: anything ahead of it lengthens the run -> longest first
    skewed = {1: [1.0] * 8, 2: [1.0] * 8, 3: [40.0]}
    assert priorities.levels_first(skewed, 4) == 0
    assert priorities.simulated_makespan([40.0, *[1.0] * 16], 4) == 40.0


def test_the_graph_ranks_the_early_levels_above_the_rest():
    from qcmb_dask.graph import build

    plan = qcmb_dask.plan(mbe_input(3, keywords={"bsse_type": "cp"}))
    graph = build(plan, task_config={"ncores": 1}, workers=2)
    by_level = {}
    for task in plan:
        by_level.setdefault(task.nbody, []).append(graph.priorities[graph.fragments[task.label].key])
    early = priorities.levels_first({n: [t.cost for t in plan if t.nbody == n] for n in by_level}, 2)
    assert early >= 2  # cp trimer on 2 workers: its 2-body fragments (no 1-body ones) go before the trimer
    for low in [n for n in by_level if n <= early]:
        for high in by_level:
            if high > low:
                assert min(by_level[low]) > max(by_level[high]), (low, high)
