"""Placement of fragments on CPU and GPU workers (pure: no Dask, no CUDA), and the GPU side of the cost history."""

from __future__ import annotations

import pytest

from qcmb_dask.errors import InvalidInput
from qcmb_dask.planning import cost, cost_history
from qcmb_dask.planning.placement import Workers, gpu_seconds, place, sharing_stretch
from qcmb_dask.planning.plan import FragmentTask


def task(label: str, nbody: int, seconds: float, mc: str = "mp2/cc-pvtz", driver: str = "energy") -> FragmentTask:
    fragments = tuple(range(1, nbody + 1))
    return FragmentTask(label, mc, nbody, fragments, fragments, "pyscf", "mp2", "cc-pvtz", driver, seconds, seconds)


def hexamer_expansion(mc: str = "mp2/cc-pvtz") -> list[FragmentTask]:
    """A (H2O)6 expansion to 3-body in the model's one-core seconds for MP2/cc-pVTZ: 6 monomers, 15 dimers, 20
    trimers (the reference GPU machine's measured set, ../shared/gpu/README.md)."""
    nbf = cost.basis_functions("cc-pvtz", "O") + 2 * cost.basis_functions("cc-pvtz", "H")
    sizes = {1: 6, 2: 15, 3: 20}
    return [
        task(f"{n}-{i}", n, cost.estimate(n * nbf, 3 * n, "mp2", "energy"), mc)
        for n, count in sizes.items()
        for i in range(count)
    ]


def test_the_gpu_model_reproduces_the_reference_machine_within_a_third():
    nbf = cost.basis_functions("cc-pvtz", "O") + 2 * cost.basis_functions("cc-pvtz", "H")
    measured = {1: 0.39, 2: 0.45, 3: 0.73}  # seconds per fragment on one H200, one process
    for n, seconds in measured.items():
        modelled = gpu_seconds(cost.estimate(n * nbf, 3 * n, "mp2", "energy"))
        assert modelled == pytest.approx(seconds, rel=0.34), n


def test_sharing_a_card_stretches_each_fragment_by_the_measured_throughput():
    assert sharing_stretch(1) == 1.0
    assert sharing_stretch(2) == pytest.approx(2 / 1.07)
    assert sharing_stretch(4) == pytest.approx(4 / 1.24)
    assert sharing_stretch(3) == pytest.approx(3 / ((1.07 + 1.24) / 2))
    assert sharing_stretch(8) == pytest.approx(8 / 1.24)  # beyond the measured: no further gain


def test_auto_keeps_monomers_on_cpu_and_sends_the_k_mers_to_the_gpus():
    tasks = hexamer_expansion()
    placement = place(tasks, {"mp2/cc-pvtz": "auto"}, Workers(cpu=12, gpu=4, processes_per_gpu=4))
    by_level = {n: {placement.devices[t.label] for t in tasks if t.nbody == n} for n in (1, 2, 3)}
    assert by_level[3] == {"gpu"}
    assert by_level[1] == {"cpu"}
    assert placement.counts()["gpu"] >= 20
    assert placement.makespan_s < placement.cpu_only_makespan_s / 4
    line = placement.summary()
    assert "on GPU" in line and "on CPU" in line and "CPU workers alone" in line


def test_gpu_sends_every_fragment_it_can_to_the_gpus():
    tasks = hexamer_expansion()
    placement = place(tasks, {"mp2/cc-pvtz": "gpu"}, Workers(cpu=12, gpu=2))
    assert set(placement.devices.values()) == {"gpu"}


def test_gpu_without_a_gpu_worker_is_refused_before_anything_runs():
    with pytest.raises(InvalidInput, match=r"mp2/cc-pvtz.*device 'gpu'.*gpus=N"):
        place(hexamer_expansion(), {"mp2/cc-pvtz": "gpu"}, Workers(cpu=4, gpu=0))


def test_auto_without_a_gpu_worker_runs_on_cpu():
    placement = place(hexamer_expansion(), {"mp2/cc-pvtz": "auto"}, Workers(cpu=4, gpu=0))
    assert set(placement.devices.values()) == {"cpu"}
    assert placement.summary() == ""


def test_a_method_the_gpu_lacks_runs_on_cpu_and_is_said():
    tasks = hexamer_expansion("ccsd/cc-pvtz")
    placement = place(tasks, {"ccsd/cc-pvtz": "gpu"}, Workers(cpu=2, gpu=2), lambda t: "gpu4pyscf has no CCSD")
    assert set(placement.devices.values()) == {"cpu"}
    assert len(placement.fallbacks) == len(tasks)
    assert "gpu4pyscf has no CCSD" in placement.summary()


def test_programs_that_cannot_use_a_gpu_are_not_placed():
    tasks = [*hexamer_expansion(), task("nw", 1, 1.0, mc="hf/sto-3g")]
    placement = place(tasks, {"mp2/cc-pvtz": "auto"}, Workers(cpu=2, gpu=2))
    assert "nw" not in placement.devices


def test_a_gpu_only_cluster_still_runs_what_asks_for_cpu_on_cpu():
    tasks = hexamer_expansion()
    placement = place(tasks, {"mp2/cc-pvtz": "cpu"}, Workers(cpu=0, gpu=2))
    assert set(placement.devices.values()) == {"cpu"}
    assert placement.makespan_s > 0


def test_placement_is_linear_in_the_number_of_fragments():
    import time

    many = [task(str(i), 2, 1.0 + i % 7) for i in range(100_000)]
    began = time.perf_counter()
    place(many, {"mp2/cc-pvtz": "auto"}, Workers(cpu=64, gpu=16))
    assert time.perf_counter() - began < 5.0  # about 0.5 s here; a quadratic placement would take hours


def test_gpu_times_are_kept_apart_from_cpu_times_in_the_history(tmp_path):
    tasks = hexamer_expansion()[:4]
    records = [{"label": t.label, "ok": True, "start": 0.0, "stop": 2.0} for t in tasks]
    devices = {tasks[0].label: "gpu", tasks[1].label: "gpu", tasks[2].label: "gpu", tasks[3].label: "cpu"}
    ratios = cost_history.measured_ratios(tasks, records, 1, devices, processes_per_gpu=2)
    kinds = [kind for kind, _ in ratios]
    assert kinds.count("pyscf|mp2|cc-pvtz|energy|gpu") == 3
    assert kinds.count("pyscf|mp2|cc-pvtz|energy") == 1
    gpu_ratio = next(r for k, r in ratios if k.endswith("|gpu"))
    assert gpu_ratio == pytest.approx(2.0 / gpu_seconds(tasks[0].model_cost, 2))
    cost_history.record(tmp_path, ratios)
    assert cost_history.gpu_factor(tmp_path) == pytest.approx(gpu_ratio)
    # the CPU estimate is not refined by GPU times: one CPU ratio is below the minimum, so it has none
    assert cost_history.factor_for(tasks[3], cost_history.load(tmp_path)) is None


def test_without_gpu_measurements_the_gpu_model_stands(tmp_path):
    assert cost_history.gpu_factor(tmp_path) == 1.0
    assert cost_history.gpu_factor(None) == 1.0


def test_a_gpu_fragments_estimate_for_walltime_aware_workers_is_the_gpus():
    tasks = hexamer_expansion()
    placement = place(tasks, {"mp2/cc-pvtz": "gpu"}, Workers(cpu=2, gpu=2, processes_per_gpu=2))
    trimer = next(t for t in tasks if t.nbody == 3)
    assert placement.gpu_seconds(trimer) == pytest.approx(gpu_seconds(trimer.cost, 2))
    assert placement.gpu_seconds(trimer) < trimer.cost / 10


def test_the_graph_tells_each_fragment_its_device_and_asks_gpu_fragments_for_a_gpu():
    import qcmb_dask
    from qcmb_dask.graph import build

    from .conftest import mbe_input

    plan = qcmb_dask.plan(mbe_input(3, keywords={"bsse_type": "nocp"}, atomic_keywords={"device": "auto"}))
    monomers = {t.label for t in plan.tasks if t.nbody == 1}
    placement = place(plan.tasks, {"(auto)": "auto"}, Workers(cpu=1, gpu=1))
    placement.devices.update({label: ("cpu" if label in monomers else "gpu") for label in placement.devices})
    graph = build(plan, task_config={"ncores": 4}, placement=placement, task_resources={"qcmb-dask-process": 1})
    layer = next(iter(graph.result.dask.layers.values()))
    resources = layer.annotations["resources"]
    for task in plan.tasks:
        job, key = graph.jobs[task.label], graph.fragments[task.label].key
        device = "cpu" if task.label in monomers else "gpu"
        assert job.specification["keywords"]["device"] == device
        if device == "gpu":
            assert resources(key) == {"qcmb-dask-process": 1, "GPU": 1}
            assert job.estimate_s == pytest.approx(placement.gpu_seconds(task))
            assert job.task_config["ncores"] == 1  # one core drives the card
        else:
            assert resources(key) is None  # the run's own resources apply (Client.compute)
            assert job.estimate_s == pytest.approx(task.cost / 4)
            assert job.task_config["ncores"] == 4
    assert plan.specifications["(auto)"]["specification"]["keywords"] == {"device": "auto"}  # the plan unchanged

    placement.cpu_restricted = True  # the CPU workers beside the GPU ones declare the CPU resource
    graph = build(plan, task_config={"ncores": 1}, placement=placement)
    resources = next(iter(graph.result.dask.layers.values())).annotations["resources"]
    for task in plan.tasks:
        key = graph.fragments[task.label].key
        assert resources(key) == ({"CPU": 1} if task.label in monomers else {"GPU": 1})
    assert resources(graph.result.key) is None  # analyses go anywhere


def test_inputs_placed_one_after_another_see_each_others_load():
    from qcmb_dask.planning.placement import Load

    workers = Workers(cpu=4, gpu=1)
    load = Load.idle(workers)
    first = place(hexamer_expansion(), {"mp2/cc-pvtz": "auto"}, workers, load=load)
    second = place(hexamer_expansion(), {"mp2/cc-pvtz": "auto"}, workers, load=load)
    alone = place(hexamer_expansion(), {"mp2/cc-pvtz": "auto"}, workers)
    assert first.devices == alone.devices
    assert second.makespan_s > alone.makespan_s  # it starts where the first left the workers


def test_a_slow_cpu_does_not_make_the_gpu_look_slow():
    """The GPU model is fitted to the cost model's own seconds: a machine whose CPU runs 3x slower than the model
    (a refined cost 3x the model's) moves fragments to the GPU, not away from it."""
    import dataclasses

    tasks = hexamer_expansion()
    slow_cpu = [dataclasses.replace(t, cost=3 * t.model_cost) for t in tasks]
    trimer = next(t for t in slow_cpu if t.nbody == 3)
    placement = place(slow_cpu, {"mp2/cc-pvtz": "auto"}, Workers(cpu=12, gpu=4, processes_per_gpu=4))
    assert placement.gpu_seconds(trimer) == pytest.approx(gpu_seconds(trimer.model_cost, 4))
    as_modelled = place(tasks, {"mp2/cc-pvtz": "auto"}, Workers(cpu=12, gpu=4, processes_per_gpu=4))
    assert placement.counts()["gpu"] >= as_modelled.counts()["gpu"]


def test_the_device_keyword_is_read_as_pyscf_reads_it_whatever_its_case():
    import qcmb_dask
    from qcmb_dask.execution.devices import device_of
    from qcmb_dask.graph import _on_device

    from .conftest import mbe_input

    plan = qcmb_dask.plan(mbe_input(2, keywords={"bsse_type": "nocp"}, atomic_keywords={"Device": "AUTO"}))
    assert device_of(plan) == {"(auto)": "auto"}
    assert _on_device(plan, "(auto)", "gpu")["keywords"] == {"device": "gpu"}  # one device keyword, not two


def test_fragments_on_one_device_share_one_specification_in_the_client():
    """A million fragments must not hold a million copies of their model chemistry's specification."""
    import qcmb_dask
    from qcmb_dask.graph import build

    from .conftest import mbe_input

    plan = qcmb_dask.plan(mbe_input(3, keywords={"bsse_type": "nocp"}, atomic_keywords={"device": "gpu"}))
    placement = place(plan.tasks, {"(auto)": "gpu"}, Workers(cpu=1, gpu=1))
    jobs = list(build(plan, task_config={"ncores": 2}, placement=placement).jobs.values())
    assert len({id(job.specification) for job in jobs}) == 1
    assert len({id(job.task_config) for job in jobs}) == 1
