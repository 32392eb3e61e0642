"""Whole runs with fragments placed on GPU workers, on a machine without a GPU.

A worker "has a GPU" when it declares the Dask resource ``GPU`` (as the workers qcmb_dask starts for GPUs do);
the program is PySCF on the CPU under a test harness that declares the GPU device and records where each
calculation ran (:class:`tests.fake_programs.FakeGPUHarness`). What is under test is everything but the kernels:
placement, resources, the keyword each fragment is told, store keys shared by both devices, the retry of a
fragment that ran out of GPU memory, and the same answer as QCManyBody's.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

import dask
import pytest

import qcmb_dask

from .conftest import entries, mbe_input, qcmanybody_reference
from .fake_programs import FakeGPUHarness

NOCP = {"bsse_type": "nocp"}


@contextlib.contextmanager
def one_cpu_and_one_gpu_worker():
    """A scheduler with one CPU worker (no CUDA device visible) and one worker that declares a GPU."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0"}
        worker = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", cluster.scheduler_address, "--nthreads", "1",
             "--resources", "GPU=1", "--no-dashboard", "--name", "gpu-worker"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client.wait_for_workers(2, timeout=60)
            yield client
        finally:
            worker.terminate()
            worker.wait(30)


@pytest.fixture(scope="module")
def mixed_client():
    with one_cpu_and_one_gpu_worker() as client:
        yield client


@pytest.fixture(scope="module")
def reference():
    return qcmanybody_reference(mbe_input(3, keywords=NOCP))


def gpu_input(device: str):
    return mbe_input(3, keywords=NOCP, program="fake-gpu", atomic_keywords={"device": device})


def where_each_ran(cache) -> list[dict]:
    results = [path for path in entries(cache) if path.name.endswith(".energy.json")]
    # an entry is a header line, then the AtomicResult
    return [json.loads(path.read_text().split("\n", 1)[1])["extras"]["fake_gpu"] for path in results]


def test_device_gpu_runs_every_fragment_on_the_gpu_worker_with_qcmanybodys_answer(mixed_client, reference, tmp_path):
    result = qcmb_dask.compute(gpu_input("gpu"), cluster=mixed_client, cache=tmp_path, harnesses=[FakeGPUHarness()])
    assert result.return_result == pytest.approx(reference.return_result, abs=1e-9)
    ran = where_each_ran(tmp_path)
    assert len(ran) == 7  # 3 monomers, 3 dimers, the trimer
    assert {(r["told"], r["gpu_resource"], r["cuda"]) for r in ran} == {("gpu", 1.0, "0")}


def test_the_same_calculation_on_either_device_has_one_store_key(mixed_client, tmp_path):
    qcmb_dask.compute(gpu_input("gpu"), cluster=mixed_client, cache=tmp_path, harnesses=[FakeGPUHarness()])
    stored = len(where_each_ran(tmp_path))
    again = qcmb_dask.compute(gpu_input("cpu"), cluster=mixed_client, cache=tmp_path, harnesses=[FakeGPUHarness()])
    assert len(where_each_ran(tmp_path)) == stored == 7
    assert again.extras["qcmb_dask"]["from_store"] == stored
    assert again.extras["qcmb_dask"]["computed"] == 0


def test_device_cpu_never_asks_for_a_gpu(mixed_client, tmp_path):
    qcmb_dask.compute(gpu_input("cpu"), cluster=mixed_client, cache=tmp_path, harnesses=[FakeGPUHarness()])
    assert {r["told"] for r in where_each_ran(tmp_path)} == {"cpu"}


@pytest.mark.parametrize("how", ["alone", "cpu"])
def test_a_fragment_out_of_gpu_memory_is_tried_again_and_nothing_is_lost(mixed_client, reference, tmp_path, how):
    with dask.config.set({"qcmb_dask.gpu.out-of-memory": how}):
        result = qcmb_dask.compute(
            gpu_input("gpu"), cluster=mixed_client, cache=tmp_path, harnesses=[FakeGPUHarness(extras={"oom_nreal": 2})]
        )
    assert result.return_result == pytest.approx(reference.return_result, abs=1e-9)
    dimers = [r for r in where_each_ran(tmp_path) if r["told"] != "gpu" or r["alone"]]
    assert len(dimers) == 3
    if how == "alone":
        assert all(r["told"] == "gpu" and r["alone"] for r in dimers)
    else:
        assert all(r["told"] == "cpu" for r in dimers)


def test_device_gpu_on_a_cluster_without_gpus_is_refused_before_anything_runs(local_client, tmp_path):
    from qcmb_dask.errors import InvalidInput

    began = time.time()
    with pytest.raises(InvalidInput, match="no worker of this cluster has a GPU"):
        qcmb_dask.compute(gpu_input("gpu"), cluster=local_client, cache=tmp_path, harnesses=[FakeGPUHarness()])
    assert entries(tmp_path) == []
    assert time.time() - began < 60


def test_device_auto_on_a_cluster_without_gpus_runs_on_cpu(local_client, reference, tmp_path):
    result = qcmb_dask.compute(gpu_input("auto"), cluster=local_client, cache=tmp_path, harnesses=[FakeGPUHarness()])
    assert result.return_result == pytest.approx(reference.return_result, abs=1e-9)
    assert {r["told"] for r in where_each_ran(tmp_path)} == {"cpu"}


def test_the_live_page_says_how_many_fragments_go_to_each_device(mixed_client, tmp_path):
    from qcmb_dask.keys import METADATA_ROOT

    qcmb_dask.compute(gpu_input("gpu"), cluster=mixed_client, cache=tmp_path, harnesses=[FakeGPUHarness()])
    runs = mixed_client.get_metadata([METADATA_ROOT, "runs"])
    placements = [run["run"]["placement"] for run in runs.values() if run["run"].get("placement")]
    assert any(p["gpu"] == 7 and p["cpu"] == 0 and "7 fragment(s) on GPU" in p["summary"] for p in placements)


def test_device_gpu_in_this_process_without_gpu4pyscf_is_refused_naming_the_package(tmp_path):
    from qcmb_dask.errors import InvalidInput

    mbin = mbe_input(2, keywords=NOCP, atomic_keywords={"device": "gpu"})
    with pytest.raises(InvalidInput, match=r"would run on a GPU, but on this process: .*gpu4pyscf-cuda"):
        qcmb_dask.compute(mbin, cluster="sync", cache=tmp_path)
    assert entries(tmp_path) == []


def test_gpu_workers_without_gpu4pyscf_are_a_refusal_naming_the_package_not_a_failure_per_fragment(tmp_path):
    """The embedded cluster trusts gpus=1 where it cannot count GPUs (this machine): its GPU worker is asked
    whether PySCF can use a GPU there before a fragment is submitted."""
    from qcmb_dask.errors import InvalidInput

    mbin = mbe_input(2, keywords=NOCP, atomic_keywords={"device": "gpu"})
    with pytest.raises(InvalidInput, match=r"would run on a GPU, but on the GPU worker .*gpu4pyscf-cuda"):
        qcmb_dask.compute(mbin, cluster="local", gpus=1, processes_per_gpu=1, cache=tmp_path)
    assert entries(tmp_path) == []


def test_a_gpu_worker_that_dies_comes_back_with_its_gpu_and_nothing_is_lost(reference, tmp_path):
    """The embedded cluster's nanny restarts the process; the GPU preload gives it its card and resource again,
    and the fragment it was running runs again there."""
    marker = tmp_path / "died"
    harness = FakeGPUHarness(extras={"die_once": str(marker)})
    result = qcmb_dask.compute(
        gpu_input("gpu"), cluster="local", gpus=1, processes_per_gpu=1, n_workers=1, cache=tmp_path,
        harnesses=[harness],
    )  # fmt: skip
    assert marker.exists()
    assert result.return_result == pytest.approx(reference.return_result, abs=1e-9)
    ran = where_each_ran(tmp_path)
    assert len(ran) == 7 and {(r["told"], r["gpu_resource"], r["cuda"]) for r in ran} == {("gpu", 1.0, "0")}


def test_device_gpu_for_a_method_no_gpu_has_runs_on_cpu_without_asking_for_one(tmp_path):
    """CCSD(T) is not in gpu4pyscf: with device gpu (and gpu_unsupported cpu, the default) every fragment runs on
    the CPU, so neither a GPU nor gpu4pyscf is needed, in this process or on a cluster."""
    specs = {"(auto)": ("ccsd(t)", "sto-3g")}
    on_gpu = mbe_input(2, keywords=NOCP, specs=specs, atomic_keywords={"device": "gpu"})
    on_cpu = mbe_input(2, keywords=NOCP, specs=specs)
    ours = qcmb_dask.compute(on_gpu, cluster="sync", cache=tmp_path)
    again = qcmb_dask.compute(on_cpu, cluster="sync", cache=tmp_path)
    assert ours.return_result == pytest.approx(again.return_result, abs=1e-12)
    assert again.extras["qcmb_dask"]["computed"] == 0  # one store key for both


def test_cpu_fragments_never_take_a_gpu_workers_thread(reference, tmp_path):
    """Most fragments of this run are placed on the CPU (STO-3G: a GPU is hardly faster); the GPU worker, idle
    beside them, takes none of them: the CPU worker declares the CPU resource they ask for."""
    result = qcmb_dask.compute(
        gpu_input("auto"), cluster="local", gpus=1, processes_per_gpu=1, n_workers=1, cache=tmp_path,
        harnesses=[FakeGPUHarness()],
    )  # fmt: skip
    assert result.return_result == pytest.approx(reference.return_result, abs=1e-9)
    ran = where_each_ran(tmp_path)
    on_cpu = [r for r in ran if r["told"] == "cpu"]
    assert len(ran) == 7 and len(on_cpu) >= 4
    assert {(r["gpu_resource"], r["cuda"]) for r in on_cpu} == {(0.0, "")}
    assert {(r["gpu_resource"], r["cuda"]) for r in ran if r["told"] == "gpu"} <= {(1.0, "0")}


def test_many_inputs_on_gpu_workers_each_with_qcmanybodys_answer(mixed_client, reference, tmp_path):
    """Two inputs (the trimer twice, one on GPU, one on CPU): shared calculations run once, on the device of the
    input that has them first, and each input gets QCManyBody's answer."""
    results = qcmb_dask.compute_many(
        [gpu_input("gpu"), gpu_input("cpu")], cluster=mixed_client, cache=tmp_path, harnesses=[FakeGPUHarness()]
    )
    for result in results:
        assert result.return_result == pytest.approx(reference.return_result, abs=1e-9)
    ran = where_each_ran(tmp_path)
    assert len(ran) == 7


@pytest.mark.parametrize(
    "setting, value", [("gpu.memory-fraction", 1.5), ("gpu.memory-fraction", "most"), ("gpu.out-of-memory", "retry")]
)
def test_gpu_settings_a_worker_could_not_use_are_refused_before_anything_starts(tmp_path, setting, value):
    from qcmb_dask.errors import InvalidArgument

    with dask.config.set({f"qcmb_dask.{setting}": value}), pytest.raises(InvalidArgument, match=setting):
        qcmb_dask.compute(gpu_input("gpu"), cluster="local", gpus=1, cache=tmp_path, harnesses=[FakeGPUHarness()])
    assert entries(tmp_path) == []
