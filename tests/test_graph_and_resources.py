"""Graph structure (keys, dependencies, ordering) and per-fragment resources; no QC runs here."""

import pytest
from dask.core import get_dependencies
from dask.utils import key_split

import qcmb_dask
from qcmb_dask.clusters import resources
from qcmb_dask.graph import build

from .conftest import mbe_input

DATA = mbe_input(3, keywords={"bsse_type": ["cp", "nocp", "vmfc"]})


def graph_of(ordering="free"):
    plan = qcmb_dask.plan(DATA)
    return plan, build(plan, task_config={"ncores": 1}, ordering=ordering)


def dependencies(delayed_obj):
    dsk = dict(delayed_obj.__dask_graph__())
    return dsk, lambda key: set(get_dependencies(dsk, key))


def test_dashboard_groups_fragments_by_level():
    plan, graph = graph_of()
    groups = {}
    for task in plan:
        groups.setdefault(key_split(graph.fragments[task.label].key), set()).add(task.nbody)
    assert groups == {"fragment-one-body": {1}, "fragment-two-body": {2}, "fragment-three-body": {3}}
    assert key_split(graph.result.key) == "mbe-result"
    assert {key_split(level.key) for level in graph.levels.values()} == {"mbe-level"}


def test_fragments_depend_only_on_the_parent_molecule_when_free():
    plan, graph = graph_of("free")
    dsk, deps = dependencies(graph.result)
    for node in graph.fragments.values():
        assert deps(node.key) == {graph.parent.key}


def test_level_nodes_read_every_fragment_of_their_level_and_below_through_the_tree():
    plan, graph = graph_of()
    dsk, deps = dependencies(graph.result)
    fragments = {f.key for f in graph.fragments.values()}

    def reached(key):
        seen, todo = set(), [key]
        while todo:
            for dep in deps(todo.pop()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    for k, level in graph.levels.items():
        assert reached(level.key) & fragments == {graph.fragments[t.label].key for t in plan if t.nbody <= k}
        assert not deps(level.key) & fragments, "a level reads partial sums, not fragment results"
    assert reached(graph.outcome.key) & fragments == fragments
    assert {lv.key for lv in graph.levels.values()} <= deps(graph.outcome.key)
    assert deps(graph.result.key) == {graph.outcome.key}


def test_only_batch_sums_read_fragment_results_each_a_batch_of_one_level():
    import dask

    with dask.config.set({"qcmb_dask.stream.batch-size": 4}):
        plan, graph = graph_of()
    dsk, deps = dependencies(graph.result)
    fragments = {f.key for f in graph.fragments.values()}
    level_of = {graph.fragments[t.label].key: t.nbody for t in plan}
    readers = {key for key in dsk if deps(key) & fragments}
    assert readers == {batch.sum_key for batch in graph.batches}
    for batch in graph.batches:
        assert deps(batch.sum_key) == set(batch.fragments) and len(batch.fragments) <= 4
        assert {level_of[key] for key in batch.fragments} == {batch.nbody}
    assert sorted(key for batch in graph.batches for key in batch.fragments) == sorted(fragments)


def test_the_whole_analysis_where_each_calculation_is_kept():
    data = mbe_input(3, keywords={"bsse_type": ["nocp"]}, protocols={"cluster_results": "all"})
    graph = build(qcmb_dask.plan(data), task_config={"ncores": 1})
    assert graph.batches == [] and graph.tree == {}
    dsk, deps = dependencies(graph.result)
    assert deps(graph.outcome.key) >= {f.key for f in graph.fragments.values()}


def test_by_level_ordering_makes_level_k_wait_for_level_k_minus_1():
    plan, graph = graph_of("by_level")
    dsk, deps = dependencies(graph.result)
    for task in plan:
        fragment_deps = deps(graph.fragments[task.label].key)
        barriers = [d for d in fragment_deps if key_split(d) == "level-barrier"]
        if task.nbody == 1:
            assert barriers == []
        else:
            (barrier,) = barriers
            assert deps(barrier) == {graph.fragments[t.label].key for t in plan if t.nbody == task.nbody - 1}


def test_unknown_ordering_is_rejected():
    with pytest.raises(ValueError, match="by_level"):
        graph_of("sideways")


def test_build_graph_is_a_delayed_whose_compute_gives_the_result():
    result = qcmb_dask.build_graph(mbe_input(2, keywords={"bsse_type": "nocp"})).compute(scheduler="sync")
    assert result.properties.nocp_corrected_interaction_energy < 0


def test_embedded_cluster_fills_the_machine_without_oversubscribing(monkeypatch):
    monkeypatch.setattr(resources, "machine_cores", lambda: 16)
    assert resources.for_this_machine(None, None, 4.0) == resources.Resources(16, 1, 4.0)
    assert resources.for_this_machine(None, 4, 4.0) == resources.Resources(4, 4, 4.0)
    assert resources.for_this_machine(2, None, 4.0) == resources.Resources(2, 8, 4.0)
    with pytest.raises(ValueError, match="exceeds the 16 cores"):
        resources.for_this_machine(5, 4, None)


def test_few_calculations_get_the_spare_cores(monkeypatch):
    monkeypatch.setattr(resources, "machine_cores", lambda: 16)
    assert resources.for_this_machine(None, None, 4.0, ncalculations=3) == resources.Resources(3, 5, 4.0)
    assert resources.for_this_machine(None, None, 4.0, ncalculations=100) == resources.Resources(16, 1, 4.0)


def test_most_expensive_fragments_get_the_highest_priority():
    import dask

    data = mbe_input(
        3,
        keywords={"bsse_type": ["nocp"], "levels": {1: "ccsd(t)", 2: "mp2", 3: "hf"}},
        specs={"ccsd(t)": ("ccsd(t)", "sto-3g"), "mp2": ("mp2", "sto-3g"), "hf": ("hf", "sto-3g")},
    )
    plan = qcmb_dask.plan(data)
    with dask.config.set({"qcmb_dask.early-levels-tolerance": 0}):  # no level first: longest first alone
        graph = build(plan, task_config={"ncores": 1})
    by_priority = sorted(plan, key=lambda t: -graph.priorities[graph.fragments[t.label].key])
    costs = [t.cost for t in by_priority]
    assert costs == sorted(costs, reverse=True)
    assert by_priority[0].method == "ccsd(t)"  # CCSD(T) monomers outrank the larger HF trimer
    assert all(t.cost > 0 for t in plan)


@pytest.mark.slow
def test_priorities_reach_the_scheduler(local_client):
    plan = qcmb_dask.plan(DATA)
    graph = build(plan, task_config={"ncores": 1})
    futures = local_client.compute([graph.result, *graph.fragments.values()])  # held: tasks stay on the scheduler
    futures[0].result()
    seen = local_client.run_on_scheduler(
        lambda dask_scheduler, keys: {
            k: dask_scheduler.tasks[k].priority[0] for k in keys if k in dask_scheduler.tasks
        },
        keys=[f.key for f in graph.fragments.values()],
    )
    del futures
    assert len(seen) == len(graph.fragments), "no fragment tasks found on the scheduler"
    for key, scheduler_priority in seen.items():
        assert scheduler_priority == -graph.priorities[key]  # the scheduler runs the lowest tuple first


@pytest.mark.slow
def test_fragments_wait_on_the_scheduler_not_queued_behind_each_other_on_workers(tmp_path):
    """Even in small groups (here 3 or fewer a level, on 2 threads) fragments are not assigned eagerly: a worker
    holds only the fragment it runs, so priorities decide what starts next and a worker that dies takes no
    queued fragment down with it."""
    import threading

    from .conftest import two_worker_client
    from .fake_programs import FaultyHarness

    def snapshot(dask_scheduler):
        # Analysis nodes (levels, result) are cheap and assigned as soon as they are ready: count fragments only.
        workers = dask_scheduler.workers.values()
        held = [sum(str(ts.key).startswith("fragment-") for ts in ws.processing) for ws in workers]
        return max(held), len(dask_scheduler.queued)

    data = mbe_input(3, keywords={"bsse_type": "nocp"}, program="faulty")
    harness = FaultyHarness(extras={"sleep": 0.5})
    with two_worker_client() as client:
        seen, done = [], threading.Event()
        runner = threading.Thread(
            target=lambda: (qcmb_dask.compute(data, client, harnesses=[harness], progress=False), done.set())
        )
        runner.start()
        while not done.wait(0.05):
            seen.append(client.run_on_scheduler(snapshot))
        runner.join()
    assert max(processing for processing, _ in seen) == 1
    assert max(queued for _, queued in seen) > 0


def test_task_config_carries_cores_and_memory():
    assert resources.Resources(2, 3, 1.5).task_config() == {"ncores": 3, "nnodes": 1, "retries": 0, "memory": 1.5}


@pytest.mark.slow
def test_workers_times_threads_never_exceed_cores_in_a_real_run():
    """Each fragment records the thread counts it ran with; with 2 workers x 1 thread all are 1."""
    data = mbe_input(2, keywords={"bsse_type": "nocp"}, protocols={"cluster_results": "all"})
    result = qcmb_dask.compute(data, n_workers=2, threads_per_task=1, progress=False)
    for atomic in result.cluster_results.values():
        threads = atomic.extras["pyscf"]["threads"]
        assert max(threads.values()) == 1, threads


@pytest.mark.slow
@pytest.mark.parametrize("setting, expected", [(None, 0.001), ("3ms", 0.003)])
def test_the_embedded_scheduler_sends_each_worker_its_next_fragment_promptly(setting, expected):
    """Dask holds messages to a worker for up to 5 ms to batch them; a worker that holds only the fragment it
    runs would wait that long for the next one. Workers present at the start and those joining later are sent
    to at ``qcmb_dask.scheduler-send-interval``."""
    import dask

    from qcmb_dask.clusters import backend_for
    from qcmb_dask.options import Options

    def intervals(dask_scheduler):
        return sorted(stream.interval for stream in dask_scheduler.stream_comms.values())

    with (
        dask.config.set({"qcmb_dask.scheduler-send-interval": setting} if setting else {}),
        backend_for(None).connect(
            Options.from_call(n_workers=1, threads_per_task=1), 1, lambda client: None
        ) as connection,
    ):
        client = connection.client
        assert client.run_on_scheduler(intervals) == [expected]
        client.cluster.scale(2)
        client.wait_for_workers(2, timeout=60)
        assert client.run_on_scheduler(intervals) == [expected, expected]


def test_early_levels_tolerance_zero_is_longest_first_throughout():
    import dask

    from qcmb_dask.errors import InvalidArgument

    plan = qcmb_dask.plan(DATA)
    with dask.config.set({"qcmb_dask.early-levels-tolerance": 0}):
        graph = build(plan, task_config={"ncores": 1}, workers=2)
    by_priority = sorted(plan, key=lambda t: -graph.priorities[graph.fragments[t.label].key])
    assert [t.cost for t in by_priority] == sorted((t.cost for t in plan), reverse=True)
    default = build(plan, task_config={"ncores": 1}, workers=2)
    first = max(plan, key=lambda t: default.priorities[default.fragments[t.label].key])
    assert first.nbody == 1, "by default the cheap monomers of this trimer go first"
    for bad in (-0.1, "much", True):
        with dask.config.set({"qcmb_dask.early-levels-tolerance": bad}), pytest.raises(InvalidArgument, match="0.02"):
            build(plan, task_config={"ncores": 1})
