"""Every private API qcmb_dask touches (qcmb_dask.compat), checked against the installed dependencies.

When one of these fails after an upgrade, the function it names in qcmb_dask/compat.py is what to mend.
"""

import signal
import sys

import pytest

from qcmb_dask import compat
from qcmb_dask.programs import register_shipped


def test_registered_harness_reads_qcengines_registry():
    register_shipped()
    assert type(compat.registered_harness("pyscf")).__name__ == "PySCFHarness"
    assert compat.registered_harness("no-such-program") is None


def test_the_scheduler_internals_the_page_and_the_preload_read(local_client):
    from qcmb_dask.diagnostics.page import PageHandler

    def shapes(dask_scheduler):
        streams = compat.worker_streams(dask_scheduler)
        stream = next(iter(streams.values()))
        before = stream.interval
        applied = compat.shorten_batching(stream, before / 2)
        return {
            "workers": len(streams),
            "shortened": applied and stream.interval == before / 2,
            "processing": compat.tasks_processing(dask_scheduler, "no-such-prefix"),
            "page": compat.serves_route(dask_scheduler, PageHandler),
        }

    local_client.submit(sum, [1, 2], key="compat-probe-1").result()
    found = local_client.run_on_scheduler(shapes)
    assert found == {"workers": 2, "shortened": True, "processing": 0, "page": True}
    assert local_client.run_on_scheduler(lambda dask_scheduler: compat.tasks_processing(dask_scheduler, "compat")) == 0


def test_dask_jobqueue_internals_the_batch_backend_uses():
    handler = signal.getsignal(signal.SIGINT)
    dask_jobqueue = compat.import_jobqueue()
    assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C stays a KeyboardInterrupt
    assert {"cores", "memory", "walltime"} <= set(compat.jobqueue_shipped_defaults("slurm"))
    cluster = dask_jobqueue.SLURMCluster(cores=1, memory="1GiB", scheduler_options={"dashboard_address": ":0"})
    try:
        cluster.scale(jobs=2)  # planned only: nothing is submitted until the loop starts them
        names = list(compat.planned_jobs(cluster))
        assert len(names) == 2
        compat.forget_job(cluster, names[0])
        assert list(compat.planned_jobs(cluster)) == names[1:]
    finally:
        cluster.close()


def test_a_refused_job_can_be_marked_failed():
    from distributed.core import Status

    class Job:
        status = Status.created

    job = Job()
    compat.mark_job_failed(job)
    assert job.status == Status.failed


@pytest.fixture
def local_client():
    import dask
    from distributed import Client, LocalCluster

    from qcmb_dask.clusters import scheduler_settings

    with (
        dask.config.set(scheduler_settings()),
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        yield client


def test_qcengine_describes_the_machine_without_py_cpuinfo():
    """The CPU's name comes from /proc/cpuinfo, as py-cpuinfo reports it; everything else is QCEngine's own."""
    import subprocess
    import sys

    code = (
        "import json, cpuinfo\n"
        "calls = []\n"
        "real = cpuinfo.get_cpu_info\n"
        "cpuinfo.get_cpu_info = lambda: calls.append(1) or real()\n"
        "from qcmb_dask import compat\n"
        "import qcengine.config\n"
        "quick = compat.describe_machine_quickly()\n"
        "print(json.dumps([quick, calls, qcengine.config.get_global('cpu_brand'), qcengine.config.get_global('ncores'),"
        " cpuinfo.get_cpu_info is not real and cpuinfo.get_cpu_info.__name__ == '<lambda>']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    quick, calls, brand, ncores, restored = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    if not quick:
        pytest.skip("no /proc/cpuinfo here: QCEngine describes the machine its own way")
    import cpuinfo

    assert calls == [] and ncores >= 1
    assert brand == cpuinfo.get_cpu_info()["brand_raw"]  # what py-cpuinfo would have said
    assert restored  # the test's own wrapper is back in place: ours was removed


def test_worker_resources_are_added_and_jobqueue_credentials_removed(local_client, tmp_path):
    async def add(dask_worker):
        await compat.add_worker_resources(dask_worker, {"compat-probe": 2})
        return dict(dask_worker.state.total_resources)

    assert all(found.get("compat-probe") == 2 for found in local_client.run(add).values())
    workers = local_client.scheduler_info()["workers"].values()
    assert all(w["resources"].get("compat-probe") == 2 for w in workers)

    from distributed.security import Security

    dask_jobqueue = compat.import_jobqueue()
    cluster = dask_jobqueue.SLURMCluster(
        cores=1,
        memory="1GiB",
        security=Security.temporary(),
        shared_temp_directory=str(tmp_path),
        scheduler_options={"dashboard_address": ":0"},
    )
    try:
        assert len(list(tmp_path.iterdir())) == 3  # the workers' CA, certificate and key
    finally:
        cluster.close()
    compat.remove_worker_credentials(cluster)
    assert list(tmp_path.iterdir()) == []


def test_the_machine_is_described_apart_and_published_whole():
    """QCEngine publishes its machine description empty and fills it key by key; a calculation in another thread
    meanwhile failed with KeyError 'cpu_brand'. qcmb_dask builds it aside and publishes it complete."""
    import subprocess
    import sys

    code = (
        "import qcengine.config\n"
        "from qcmb_dask import compat\n"
        "described = compat._described_apart(qcengine.config)\n"
        "print(qcengine.config._global_values is None, sorted(described) == sorted(qcengine.config.get_global()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_a_callback_runs_after_a_module_is_first_imported(tmp_path, monkeypatch):
    """compat.after_import: the hook qcmb_dask's QCEngine procedures are registered by."""
    (tmp_path / "late_module_for_the_hook.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    seen = []
    compat.after_import("late_module_for_the_hook", lambda: seen.append(sys.modules["late_module_for_the_hook"].VALUE))
    assert seen == []
    import late_module_for_the_hook  # noqa: F401

    assert seen == [1]
    compat.after_import("late_module_for_the_hook", lambda: seen.append("again"))  # imported: called at once
    assert seen == [1, "again"]


def test_a_producer_task_is_what_the_scheduler_reads_as_one():
    task = compat.producer_task("k", len, [1, 2])
    assert task.data_producer is True
    assert task() == 2


def test_pyscfs_diis_falls_back_to_numpy_only_where_scipy_fails(monkeypatch):
    import inspect

    import numpy as np
    import pyscf.lib.diis as diis
    import scipy.linalg

    assert "scipy.linalg.eigh(" in inspect.getsource(diis.DIIS.extrapolate)  # what the proxy stands in for
    assert compat.diis_eigh_with_fallback() and compat.diis_eigh_with_fallback()  # idempotent
    h = np.array([[2.0, 1.0], [1.0, 3.0]])
    np.testing.assert_allclose(diis.scipy.linalg.eigh(h)[0], scipy.linalg.eigh(h)[0])

    def fails(*args, **kwargs):
        raise np.linalg.LinAlgError("Internal Error.")

    monkeypatch.setattr(scipy.linalg, "eigh", fails)
    np.testing.assert_allclose(diis.scipy.linalg.eigh(h)[0], np.linalg.eigh(h)[0])
