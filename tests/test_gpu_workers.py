"""Workers with GPUs, without a GPU: the GPU preload's decisions (qcmb_dask.worker.gpu), an embedded cluster of
fake GPU workers (a worker that declares the resource; CUDA_VISIBLE_DEVICES is only an environment string), GPU
batch job scripts rendered without a batch system, refusals before anything starts, and a given cluster's GPU
workers counted."""

import contextlib
import os

import dask
import pytest

import qcmb_dask
from qcmb_dask import keys
from qcmb_dask.clusters import jobqueue, local
from qcmb_dask.clusters import jobqueue_settings as bs
from qcmb_dask.clusters import resources as res
from qcmb_dask.errors import InvalidArgument
from qcmb_dask.options import Options
from qcmb_dask.worker import gpu

# -- the preload's pure helpers -------------------------------------------------------------------------------------


def test_a_workers_index_is_the_variable_else_the_trailing_number_of_its_name():
    assert gpu.worker_index("SLURMCluster-7-3") == 3  # dask-jobqueue: <job>-<i> with --nworkers
    assert gpu.worker_index(2) == 2  # LocalCluster names workers 0, 1, ...
    assert gpu.worker_index("job-7-3", given="0") == 0  # the variable wins
    assert gpu.worker_index("worker") is None and gpu.worker_index(None) is None
    with pytest.raises(ValueError, match="QCMB_DASK_WORKER_INDEX"):
        gpu.worker_index("w-1", given="first")
    # clusters/ may not import worker/: the variable's name is written in three places, and must agree
    assert gpu.INDEX_VARIABLE == local.WORKER_INDEX_VARIABLE == bs.WORKER_INDEX_VARIABLE


def test_the_cards_are_a_count_of_the_visible_ones_or_a_list_of_ids():
    assert gpu.device_list("2") == ["0", "1"]
    assert gpu.device_list("2", cuda_visible="4,5,6") == ["4", "5"]  # the batch system's choice respected
    assert gpu.device_list("0,2") == ["0", "2"]
    assert gpu.device_list("GPU-abc,GPU-def", cuda_visible="1") == ["GPU-abc", "GPU-def"]
    assert gpu.device_list("0") == []
    with pytest.raises(ValueError, match="QCMB_DASK_GPUS"):
        gpu.device_list(",")


def test_each_process_of_a_card_gets_its_share_of_the_memory_fraction():
    assert gpu.memory_limit(0.9, 2) == "45%"
    assert gpu.memory_limit(0.9, 1) == "90%"
    assert gpu.memory_limit(0.9, 3) == "30%"
    assert gpu.memory_limit(1.0, 3) == "33.33%"


def test_workers_below_gpus_times_n_take_card_i_over_n_the_others_see_no_gpu():
    chosen = [gpu.card_for(i, ["4", "5"], 2, 0.9) for i in range(6)]
    assert [p.card for p in chosen] == ["4", "4", "5", "5", None, None]
    assert chosen[0].environment() == {"CUDA_VISIBLE_DEVICES": "4", "CUPY_GPU_MEMORY_LIMIT": "45%"}
    assert chosen[5].environment() == {"CUDA_VISIBLE_DEVICES": ""}
    assert "GPU worker" in chosen[3].describe() and "card 5" in chosen[3].describe()
    assert "CPU worker" in chosen[4].describe()
    assert gpu.card_for(None, ["0"], 2, 0.9).card is None  # no index: a CPU worker
    with pytest.raises(ValueError):
        gpu.card_for(0, ["0"], 0, 0.9)


class _FakeState:
    def __init__(self, resources):
        self.total_resources = dict(resources)
        self.available_resources = dict(resources)


class _FakeWorker:
    def __init__(self, name, resources=()):
        self.name = name
        self.state = _FakeState(dict(resources))


def test_the_environment_makes_a_worker_a_gpu_or_a_cpu_worker_before_it_registers():
    environ = {"QCMB_DASK_GPUS": "1", "QCMB_DASK_PROCESSES_PER_GPU": "2", "CUDA_VISIBLE_DEVICES": "3"}
    assert gpu.from_environment("job-0-1", {}) is None  # no QCMB_DASK_GPUS: the preload leaves the worker alone
    first = gpu.from_environment("job-0-1", environ)
    assert first.card == "3" and first.memory_limit == "45%"
    worker = _FakeWorker("job-0-1")
    gpu.apply(first, worker, environ)
    assert environ["CUDA_VISIBLE_DEVICES"] == "3" and environ["CUPY_GPU_MEMORY_LIMIT"] == "45%"
    assert worker.state.total_resources == {keys.GPU_RESOURCE: 1} == worker.state.available_resources
    # a third process of the job is a CPU worker: no card, a GPU resource given by hand taken back, a CPU declared
    environ = {"QCMB_DASK_GPUS": "1", "QCMB_DASK_PROCESSES_PER_GPU": "2", "CUPY_GPU_MEMORY_LIMIT": "45%"}
    cpu_worker = _FakeWorker("job-0-2", {keys.GPU_RESOURCE: 1, "other": 2})
    gpu.apply(gpu.from_environment("job-0-2", environ), cpu_worker, environ)
    assert environ == {"QCMB_DASK_GPUS": "1", "QCMB_DASK_PROCESSES_PER_GPU": "2", "CUDA_VISIBLE_DEVICES": ""}
    assert cpu_worker.state.total_resources == {"other": 2, keys.CPU_RESOURCE: 1}
    with dask.config.set({"qcmb_dask.gpu.processes-per-gpu": 3, "qcmb_dask.gpu.memory-fraction": 0.6}):
        assert gpu.from_environment("w-2", {"QCMB_DASK_GPUS": "1"}).memory_limit == "20%"  # from the config


# -- the embedded cluster -------------------------------------------------------------------------------------------


def test_gpus_visible_here_are_counted_from_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,GPU-3f2a")
    assert res.visible_gpus() == 3
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert res.visible_gpus() == 0
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "NoDevFiles")
    assert res.visible_gpus() == 0
    monkeypatch.setattr(res, "visible_gpus", lambda: 1)
    with pytest.raises(InvalidArgument, match=r"gpus=2: this machine shows 1 GPU"):
        local.LocalBackend("local").check(Options.from_call(gpus=2), 10)
    assert res.gpu_layout(None, 2, wants_gpus=True).gpus == 1  # every GPU shown, when the run asks for GPUs
    assert res.gpu_layout(None, 2).gpus == 0  # else none
    with pytest.raises(InvalidArgument, match="processes_per_gpu"):
        Options.from_call(gpus=1, processes_per_gpu=0)


def test_gpu_processes_keep_a_core_each_and_cpu_workers_share_the_rest(monkeypatch):
    monkeypatch.setattr(res, "machine_cores", lambda: 16)
    assert res.for_this_machine(None, None, 1.0, gpu_workers=4).n_workers == 16  # 4 GPU + 12 CPU
    assert res.for_this_machine(None, 2, 1.0, gpu_workers=4).n_workers == 10  # 4 GPU + 6 CPU of 2 cores
    monkeypatch.setattr(res, "machine_cores", lambda: 2)
    assert res.for_this_machine(None, None, 1.0, gpu_workers=2).n_workers == 2  # no core left: GPU workers only
    with pytest.raises(ValueError, match=r"left here beside the 2 GPU worker.*n_workers=0"):
        res.for_this_machine(1, None, 1.0, gpu_workers=2)
    with pytest.raises(ValueError, match="4 GPU worker processes need a core each .* this machine has 2"):
        res.for_this_machine(None, None, 1.0, gpu_workers=4)


def test_an_embedded_cluster_of_fake_gpu_workers(monkeypatch):
    """gpus=1, processes_per_gpu=2 on a machine said to have 3 cores: two GPU workers on card 0 with 45 % of its
    memory each, one CPU worker that sees no GPU; a task asking for a GPU runs only on the first two."""
    from distributed import get_worker

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(res, "visible_gpus", lambda: None)  # as on a machine without nvidia-smi
    monkeypatch.setattr(res, "machine_cores", lambda: 3)
    backend = local.LocalBackend("local")
    options = Options.from_call(gpus=1, processes_per_gpu=2)
    backend.check(options, 10)
    with backend.connect(options, 10, lambda client: None) as connection:
        assert connection.gpu_workers == 2 and connection.resources.n_workers == 3
        assert "1 GPU(s) \u00d7 2 fragment processes + 1 CPU workers" in connection.where
        assert "gpus=1 is trusted" in connection.where
        client = connection.client
        seen = client.run(lambda: (os.environ.get("CUDA_VISIBLE_DEVICES"), os.environ.get("CUPY_GPU_MEMORY_LIMIT")))
        workers = client.scheduler_info()["workers"]
        with_gpu = {address for address, w in workers.items() if w["resources"].get(keys.GPU_RESOURCE) == 1}
        assert len(with_gpu) == 2
        assert {seen[a] for a in with_gpu} == {("0", "45%")}
        assert [seen[a] for a in set(workers) - with_gpu] == [("", None)]
        assert connection.cpu_workers_declared
        with_cpu = {address for address, w in workers.items() if w["resources"].get(keys.CPU_RESOURCE) == 1}
        assert with_cpu == set(workers) - with_gpu  # the CPU worker declares one; the GPU workers do not
        futures = [
            client.submit(lambda i: get_worker().address, i, resources={keys.GPU_RESOURCE: 1}, pure=False)
            for i in range(8)
        ]
        assert set(client.gather(futures)) <= with_gpu


# -- batch jobs -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "system, directive",
    [
        ("slurm", "#SBATCH --gres=gpu:2"),
        ("pbs", "#PBS -l select=1:ncpus=8:mem=32GB:ngpus=2"),
        ("sge", "#$ -l gpu=2"),
        ("lsf", '#BSUB -gpu "num=2"'),
    ],
)
def test_a_gpu_jobs_script_asks_for_its_gpus_and_tells_its_workers(system, directive):
    with dask.config.set({"qcmb_dask.batch.gpus-per-job": 2}):
        script = qcmb_dask.job_script(system)
    assert directive in script
    assert f"--preload {keys.GPU_PRELOAD}" in script
    assert "export QCMB_DASK_GPUS=2\n" in script and "export QCMB_DASK_PROCESSES_PER_GPU=2\n" in script
    assert "QCMB_DASK_WORKER_INDEX" not in script  # 8 workers per job: their names end with their index
    assert "4 CPU worker(s) that see no GPU" in script


def test_gpus_per_job_from_a_profile_or_cluster_options_and_a_one_worker_job(tmp_path):
    profile = tmp_path / "gpu-partition.yaml"
    profile.write_text("jobqueue:\n  slurm:\n    queue: gpu\n    cores: 4\n    memory: 16GiB\n    gpus-per-job: 4\n")
    settings = bs.batch_settings(str(profile), processes_per_gpu=1)
    assert settings.gpus_per_job == 4 and settings.gpu_workers_per_job == 4
    assert settings.sources["gpus_per_job"] == f"profile {profile}"
    assert "--gres=gpu:4" in settings.kwargs["job_extra_directives"]
    # a job of one worker: its worker's name has no index, so the script says it
    one = bs.batch_settings("slurm", {"cores": 1, "gpus_per_job": 1}, processes_per_gpu=1)
    assert "export QCMB_DASK_WORKER_INDEX=0" in one.kwargs["job_script_prologue"]
    assert bs.batch_settings("slurm").gpus_per_job == 0  # the default: jobs without GPUs


def test_gpu_jobs_that_cannot_work_are_refused_before_submission():
    with pytest.raises(InvalidArgument, match=r"needs 4 worker processes per job, but a job of 2 cores .* has 2"):
        bs.batch_settings("slurm", {"cores": 2, "gpus_per_job": 2}, processes_per_gpu=2)
    with pytest.raises(InvalidArgument, match="how HTCONDOR jobs ask for GPUs"):
        bs.batch_settings("htcondor", {"gpus_per_job": 1})
    with pytest.raises(InvalidArgument, match="gpus-per-job=-1"):
        bs.batch_settings("slurm", {"gpus_per_job": -1})
    backend = jobqueue.JobqueueBackend("slurm")
    backend.wants_gpus = True
    backend.check(Options.from_call(), 10)  # device auto: may use GPUs, runs on the jobs' CPUs without them
    backend.needs_gpus = True
    with pytest.raises(InvalidArgument, match="the profile has no GPU partition: set qcmb_dask.batch.gpus-per-job"):
        backend.check(Options.from_call(), 10)


def test_a_gpu_batch_connection_expects_jobs_times_gpus_times_n_gpu_workers(monkeypatch):
    @contextlib.contextmanager
    def no_batch_system(settings, **kwargs):
        yield object()  # what would be the client of the submitted jobs

    monkeypatch.setattr(jobqueue, "batch_client", no_batch_system)
    backend = jobqueue.JobqueueBackend("slurm")
    backend.wants_gpus = True
    options = Options.from_call(jobs=3, processes_per_gpu=2, cluster_options={"gpus_per_job": 2})
    backend.check(options, 100)
    with backend.connect(options, 100, lambda client: None) as connection:
        assert connection.gpu_workers == 3 * 2 * 2 and connection.resources.n_workers == 3 * 8
        assert "12 GPU worker(s) in all" in connection.where


# -- a cluster the user gives ---------------------------------------------------------------------------------------


def test_a_given_clusters_gpu_workers_are_those_declaring_the_resource():
    from distributed import Client, LocalCluster

    from qcmb_dask.clusters.given import GivenBackend, gpu_workers

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, resources={"GPU": 1}, dashboard_address=":0"
        ) as with_gpus,
        Client(with_gpus) as client,
        GivenBackend(client).connect(Options.from_call(), 10, lambda c: None) as connection,
    ):
        assert connection.gpu_workers == 2
        assert "2 of its workers have a GPU" in connection.where
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as plain,
        Client(plain) as client,
    ):
        assert gpu_workers(client) == 0


def test_n_workers_zero_means_gpu_workers_alone_and_is_refused_without_gpus():
    from qcmb_dask.options import Options

    assert Options.from_call(gpus=1, n_workers=0).n_workers == 0
    assert res.for_this_machine(0, None, None, gpu_workers=2).n_workers == 2
    with pytest.raises(InvalidArgument, match="n_workers=0"):
        Options.from_call(n_workers=0)
