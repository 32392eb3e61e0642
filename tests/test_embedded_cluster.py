"""compute(cluster=None): one embedded cluster per process, reused, closed at the end; small plans in-process.

The conftest makes every test start workers (``qcmb_dask.local.startup-seconds: 0``); the tests of the
choice here set the start-up cost they mean.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dask
import psutil
import pytest

import qcmb_dask
from qcmb_dask.clusters.shared import SHARED, STARTUP_FILE, startup_seconds

from .conftest import assert_same_result, mbe_input, qcmanybody_reference

ROOT = Path(__file__).resolve().parent.parent
NOCP = {"bsse_type": "nocp"}


def scheduler_address():
    client = SHARED.client()
    return client.scheduler.address if client is not None else None


def worker_pids():
    return sorted(SHARED.client().run(os.getpid).values())


def test_a_second_compute_reuses_the_embedded_cluster_and_says_so(capfd):
    data = mbe_input(3, keywords=NOCP)
    first = qcmb_dask.compute(data, progress=True)
    address, pids = scheduler_address(), worker_pids()
    second = qcmb_dask.compute(data, progress=True)
    assert address is not None and scheduler_address() == address and worker_pids() == pids
    err = capfd.readouterr().err
    assert err.count("qcmb_dask: on the embedded cluster") == 2
    assert "worker(s), started in" in err and "worker(s), reused" in err
    reference = qcmanybody_reference(data)
    assert_same_result(first, reference)
    assert_same_result(second, reference)


def test_a_tiny_plan_runs_in_process_and_a_larger_one_on_workers(tmp_path, capfd):
    data = mbe_input(3, keywords=NOCP)
    with dask.config.set({"qcmb_dask.local.startup-seconds": None}):  # as measured here; 4 s before that
        assert startup_seconds(tmp_path) == 4.0
        result = qcmb_dask.compute(data, cache=tmp_path, progress=True)
    assert scheduler_address() is None
    assert {r["worker"] for r in qcmb_dask.timeline()} == {"main"}
    assert "qcmb_dask: running in this process: the plan is about" in capfd.readouterr().err
    assert_same_result(result, qcmanybody_reference(data))

    estimate = qcmb_dask.plan(data, cache=False).total_cost()
    with dask.config.set({"qcmb_dask.local.startup-seconds": estimate / 10}):  # workers that start quickly
        qcmb_dask.compute(data, cache=tmp_path / "other", progress=False)
    assert scheduler_address() is not None
    assert "main" not in {r["worker"] for r in qcmb_dask.timeline()}
    # The start-up it measured is kept beside the cost history, and decides the next plan.
    measured = json.loads((tmp_path / "other" / STARTUP_FILE).read_text())
    assert measured["seconds"] > 0 and measured["n_workers"] >= 1
    with dask.config.set({"qcmb_dask.local.startup-seconds": None}):
        assert startup_seconds(tmp_path / "other") == measured["seconds"]


def test_cluster_local_is_a_calls_own_and_leaves_the_shared_one_alone():
    data = mbe_input(2, keywords=NOCP)
    qcmb_dask.compute(data, progress=False)
    shared = set(SHARED.client().run(os.getpid).values())
    qcmb_dask.compute(data, "local", progress=False)
    own = {r["worker"] for r in qcmb_dask.timeline()}
    assert own and not own & {str(w) for w in SHARED.client().scheduler_info()["workers"]}
    assert set(SHARED.client().run(os.getpid).values()) == shared


def test_changed_settings_get_a_new_cluster():
    data = mbe_input(2, keywords=NOCP)
    qcmb_dask.compute(data, progress=False)
    before = scheduler_address()
    with dask.config.set({"qcmb_dask.allowed-failures": 7}):
        qcmb_dask.compute(data, progress=False)
        assert scheduler_address() != before
        assert SHARED.client().run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures) == 7


def test_close_ends_the_cluster_and_its_processes():
    qcmb_dask.compute(mbe_input(2, keywords=NOCP), progress=False)
    pids = worker_pids()
    qcmb_dask.close()
    assert SHARED.client() is None
    assert_gone(pids)


def test_an_idle_cluster_closes_itself():
    with dask.config.set({"qcmb_dask.local.idle-timeout": 1}):
        qcmb_dask.compute(mbe_input(2, keywords=NOCP), progress=False)
        pids = worker_pids()
        deadline = time.time() + 30
        while SHARED.client() is not None and time.time() < deadline:
            time.sleep(0.2)
    assert SHARED.client() is None
    assert_gone(pids)


@pytest.mark.slow
def test_the_cluster_is_gone_when_the_interpreter_exits():
    script = (
        "import os, qcmb_dask\n"
        "from qcmb_dask.clusters.shared import SHARED\n"
        "from tests.conftest import mbe_input\n"
        "if __name__ == '__main__':\n"
        "    qcmb_dask.compute(mbe_input(2), cache=False, progress=False)\n"
        "    print(sorted(SHARED.client().run(os.getpid).values()))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    pids = eval(out.stdout.strip().splitlines()[-1])
    assert len(pids) >= 1
    assert_gone(pids)


def assert_gone(pids, within: float = 15.0):
    deadline = time.time() + within
    while any(psutil.pid_exists(p) for p in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert [p for p in pids if psutil.pid_exists(p)] == []


def test_the_embedded_cluster_admits_its_own_workers_and_nobody_else():
    from distributed.security import Security

    from .test_at_a_site import _refused

    data = mbe_input(3, keywords={"bsse_type": "nocp"})
    result = qcmb_dask.compute(data, progress=False)
    where = result.extras["qcmb_dask"]["cluster"]
    assert where["kind"] != "sync" and where["scheduler"].startswith("tls://127.0.0.1:")
    assert where["workers"] >= 1  # its own workers connected, with the cluster's credentials
    assert _refused(where["scheduler"].replace("tls://", "tcp://"))
    assert _refused(where["scheduler"], Security.temporary())  # TLS, but not this cluster's certificates


def test_security_none_is_plain_tcp_and_a_wrong_value_is_named():
    with dask.config.set({"qcmb_dask.security": "none"}):
        result = qcmb_dask.compute(mbe_input(2), cluster="local", progress=False)
    assert result.extras["qcmb_dask"]["cluster"]["scheduler"].startswith("tcp://")
    with dask.config.set({"qcmb_dask.security": "yes please"}), pytest.raises(qcmb_dask.InvalidArgument) as err:
        qcmb_dask.compute(mbe_input(2), cluster="local", progress=False)
    assert "qcmb_dask.security='yes please'" in str(err.value) and "dask-config" in str(err.value)
