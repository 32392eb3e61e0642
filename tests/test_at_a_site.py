"""At a real HPC site, against the SLURM that `.ci/start-slurm` starts: the site's Dask config honoured in the
submitted job, a busy queue waited for, SIGTERM to the driver, a worker restarting inside a one-worker job, and
the driver submitted as a job of its own (`qcmb-dask submit`, `qcmb-dask status`)."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dask
import pytest

import qcmb_dask

from .conftest import entries, faulty_input, mbe_input, start_as_a_terminal_would
from .fake_programs import FaultyHarness, calls
from .test_on_slurm import QueueWatcher, assert_no_job_left, our_jobs, requires_slurm

ROOT = Path(__file__).resolve().parent.parent
HEXAMER = str(ROOT / "examples" / "water-hexamer.json")
pytestmark = [pytest.mark.slow, pytest.mark.slurm, requires_slurm]


def local_jobs(job_name: str, tmp_path: Path, **more) -> dict:
    """One-core jobs on this machine (loopback), with no walltime of their own: the site's applies."""
    return {
        "name": job_name,
        "cores": 1,
        "memory": "1GiB",
        "log_directory": str(tmp_path / "logs"),
        "interface": "lo",
        "scheduler_options": {"interface": "lo", "dashboard_address": ":0"},
        "job_script_prologue": [f"cd {ROOT}"],
        **more,
    }


@pytest.fixture
def job_name():
    import uuid

    return f"qcmb-site-{uuid.uuid4().hex[:8]}"


def scontrol(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout


def test_a_sites_dask_config_is_honoured_in_the_submitted_job(job_name, tmp_path):
    site = tmp_path / "site-dask"
    site.mkdir()
    (site / "jobqueue.yaml").write_text(
        textwrap.dedent(
            """
            jobqueue:
              slurm:
                walltime: '00:30:00'        # dask-jobqueue's own default: still the site's choice
                queue: debug
                processes: 1                # qcmb_dask's to choose: overridden, with a warning
                job-extra: ['--comment=site-config']   # dask-jobqueue's old name
            """
        )
    )
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, qcmb_dask
            from pathlib import Path
            from tests.conftest import mbe_input
            from tests.test_at_a_site import local_jobs
            if __name__ == "__main__":
                options = local_jobs({job_name!r}, Path({str(tmp_path)!r}), cores=2, memory="2GiB")
                result = qcmb_dask.compute(mbe_input(2), "slurm", jobs=1, cache=False, progress=False,
                                           cluster_options=options)
                print(json.dumps(result.return_result))
            """
        )
    )
    env = {**os.environ, "DASK_CONFIG": str(site), "PYTHONPATH": str(ROOT)}  # as a site installs its config
    proc = subprocess.Popen(
        [sys.executable, str(script)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    seen = ""
    deadline = time.time() + 120
    while not seen and time.time() < deadline and proc.poll() is None:
        for job_id, _ in our_jobs(job_name):
            seen = scontrol(job_id)
        time.sleep(0.2)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "TimeLimit=00:30:00" in seen and "Partition=debug" in seen and "Comment=site-config" in seen, seen
    assert "processes=1 from dask config" in err and "is not used" in err and "runs 2 worker(s)" in err
    assert "FutureWarning" not in err  # dask-jobqueue's own warning about job-extra: translated already
    assert json.loads(out.splitlines()[-1]) == pytest.approx(
        qcmb_dask.compute(mbe_input(2), "sync", progress=False).return_result, abs=1e-9
    )
    assert_no_job_left(job_name)


def test_a_busy_queue_is_waited_for_with_its_reason_and_nothing_is_cancelled(job_name, tmp_path, caplog):
    cpus = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True).stdout.split()[0]
    blocker = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "-J",
            f"{job_name}-blocker",
            "-c",
            cpus,
            "-o",
            str(tmp_path / "blocker.out"),
            "--wrap",
            "sleep 25",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        with (
            dask.config.set({"qcmb_dask.batch.queue-report-interval": 2}),
            caplog.at_level(logging.INFO, logger="qcmb_dask"),
            QueueWatcher(job_name) as queue,
        ):
            result = qcmb_dask.compute(
                mbe_input(2), "slurm", jobs=1, cluster_options=local_jobs(job_name, tmp_path), progress=False
            )
    finally:
        subprocess.run(["scancel", blocker])
    waiting = [r.getMessage() for r in caplog.records if "waiting for 1 SLURM job(s) to start" in r.getMessage()]
    # squeue's reason: Priority while the scheduler has not looked at the job yet, then Resources
    pending = [m for m in waiting if "pending" in m]  # then "1 running" until its worker connects
    assert pending and all(("1 pending (Priority)" in m or "1 pending (Resources)" in m) for m in pending), waiting
    assert len(queue.ids) == 1  # the job kept its place in the queue: never cancelled and resubmitted
    assert result.return_result == pytest.approx(
        qcmb_dask.compute(mbe_input(2), "sync", progress=False).return_result, abs=1e-9
    )
    assert_no_job_left(job_name)


def test_sigterm_to_the_driver_cancels_the_jobs_and_a_rerun_computes_only_the_rest(job_name, tmp_path, scenario):
    log, store = tmp_path / "calls.log", tmp_path / "store"
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import qcmb_dask
            from pathlib import Path
            from tests.conftest import faulty_input
            from tests.fake_programs import FaultyHarness
            from tests.test_at_a_site import local_jobs
            if __name__ == "__main__":
                harness = FaultyHarness(extras={{"log": {str(log)!r}, "sleep": 2.0}})
                qcmb_dask.compute(faulty_input(), "slurm", jobs=2, harnesses=[harness], cache={str(store)!r},
                                  progress=False, cluster_options=local_jobs({job_name!r}, Path({str(tmp_path)!r})))
            """
        )
    )
    proc = start_as_a_terminal_would(script, tmp_path / "stderr.txt")
    deadline = time.time() + 120
    while len(entries(store)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
    os.kill(proc.pid, signal.SIGTERM)  # the driver only, as scancel of a driver job signals its batch step
    signalled = time.time()
    proc.wait(timeout=60)
    assert "Terminated: SIGTERM received" in (tmp_path / "stderr.txt").read_text()
    assert_no_job_left(job_name, within=30)
    assert time.time() - signalled < 30
    stored = len(entries(store))
    assert 2 <= stored < 7

    before = calls(log)
    harness = FaultyHarness(extras={"log": str(log)})
    result = qcmb_dask.compute(faulty_input(), "sync", harnesses=[harness], cache=store, progress=False)
    assert calls(log) - before == 7 - stored  # only what was missing
    assert result.extras["qcmb_dask"]["from_store"] == stored
    scenario.record(
        "SIGTERM to a driver on SLURM",
        f"jobs gone in {time.time() - signalled:.0f} s; {stored} of 7 stored; the rerun computed {7 - stored}",
        calls=calls(log),
        stored=len(entries(store)),
    )


def test_a_worker_restarting_in_a_one_worker_job_does_not_lose_the_job(job_name, tmp_path):
    harness = FaultyHarness(extras={"crash_nreal": 2})  # every dimer ends its worker process; the nanny restarts it
    with dask.config.set({"qcmb_dask.batch.allowed-failures": 1}), QueueWatcher(job_name) as queue:
        partial = qcmb_dask.compute(
            faulty_input(keywords={"bsse_type": "nocp", "max_nbody": 2}),
            "slurm",
            jobs=1,
            harnesses=[harness],
            on_error="partial",
            cache=False,
            progress=False,
            cluster_options=local_jobs(job_name, tmp_path),
        )
    assert isinstance(partial, qcmb_dask.PartialResult) and partial.nbody == 1
    assert {f.error_type for f in partial.failures} == {"worker_lost"}
    assert len(queue.ids) == 1, f"the job was ended and replaced while its worker restarted: {queue.ids}"
    assert_no_job_left(job_name)


def test_submit_runs_the_driver_as_a_job_and_status_follows_it(job_name, tmp_path):
    store, out = tmp_path / "store", tmp_path / "result.json"
    options = local_jobs(job_name, tmp_path)
    command = [
        sys.executable, "-m", "qcmb_dask.cli", "submit", HEXAMER, "--cluster", "slurm", "--cache", str(store),
        "--out", str(out), "--cluster-option", f"name={job_name}", "--cluster-option", "cores=1",
        "--cluster-option", "memory=1GiB", "--cluster-option", "interface=lo", "--cluster-option",
        "scheduler_options={interface: lo, dashboard_address: ':0'}", "--cluster-option",
        f"log_directory={tmp_path / 'logs'}", "--driver-memory", "2G", "--jobs", "2",
    ]  # fmt: skip
    assert options["cores"] == 1

    def submitted() -> str:
        answer = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert answer.returncode == 0, answer.stderr
        assert "follow it:     tail -f" in answer.stdout and "qcmb-dask status" in answer.stdout
        return answer.stdout.split("Submitted driver job ")[1].split()[0]

    def status() -> str:
        return subprocess.run(
            [sys.executable, "-m", "qcmb_dask.cli", "status", HEXAMER, "--cache", str(store)],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout

    driver = submitted()
    deadline = time.time() + 180
    while len(entries(store)) < 10 and time.time() < deadline:
        time.sleep(0.5)
    subprocess.run(["scancel", driver], check=True)  # the driver's own walltime, or a user changing their mind
    assert_no_job_left(job_name, within=30)  # its worker jobs went with it
    partial = status()
    done = int(partial.split(": ")[1].split(" of ")[0])
    assert 10 <= done < 82 and "still to compute" in partial, partial

    driver = submitted()  # resumes
    deadline = time.time() + 300
    while not out.exists() and time.time() < deadline:
        time.sleep(1)
    while any(job_id == driver for job_id, _ in our_jobs("qcmb-dask-driver")) and time.time() < deadline:
        time.sleep(0.5)
    assert out.exists(), (tmp_path / "logs").glob("*")
    assert "82 of 82 calculations in the store" in status() and "complete" in status()
    log = next((tmp_path / "logs").glob(f"qcmb-dask-driver-{driver}.log")).read_text()
    computed = int(log.split(" fragment(s) computed, ")[0].rsplit(" ", 1)[-1])
    assert computed <= 82 - done  # the second driver computed only what the first had not
    saved = qcmb_dask.load_result(out)
    again = qcmb_dask.compute(HEXAMER, "sync", cache=store, progress=False)  # every fragment from the store
    assert again.extras["qcmb_dask"]["computed"] == 0
    assert saved.properties.cp_corrected_interaction_energy == pytest.approx(
        again.properties.cp_corrected_interaction_energy, abs=1e-12
    )


def _refused(address: str, security=None) -> bool:
    """Whether a Client to ``address`` (plain, or with ``security``) is turned away."""
    from distributed import Client

    try:
        with Client(address, security=security, timeout="5s"):
            return False
    except (OSError, TimeoutError):
        return True


def test_a_slurm_run_admits_its_own_workers_and_nobody_else(job_name, tmp_path):
    import re
    import stat
    import threading

    from distributed.security import Security

    credentials = tmp_path / "credentials"
    harness = FaultyHarness(extras={"sleep": 1.0})
    outcome = {}

    def run():
        outcome["result"] = qcmb_dask.compute(
            faulty_input(3),
            "slurm",
            jobs=1,
            harnesses=[harness],
            cache=False,
            progress=False,
            cluster_options=local_jobs(job_name, tmp_path),
        )

    with dask.config.set({"qcmb_dask.batch.credentials-directory": str(credentials)}):
        runner = threading.Thread(target=run)
        runner.start()
        deadline, running = time.time() + 120, []
        while not running and time.time() < deadline:
            running = [job for job, state in our_jobs(job_name) if state == "RUNNING"]
            time.sleep(0.5)
        assert running, "the worker job never ran"
        script = subprocess.run(
            ["scontrol", "write", "batch_script", running[0], "-"], capture_output=True, text=True
        ).stdout
        address = re.search(r"(tls://[0-9.]+:[0-9]+)", script).group(1)
        files = sorted(credentials.iterdir())
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in files}
        plain_refused = _refused(address.replace("tls://", "tcp://"))
        stranger_refused = _refused(address, Security.temporary())
        runner.join(300)
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o700
    assert len(files) == 3 and set(modes.values()) == {0o600}, modes  # CA, the workers' certificate and key
    assert all(str(path) in script for path in files)
    assert plain_refused and stranger_refused
    assert outcome["result"].extras["qcmb_dask"]["cluster"]["scheduler"].startswith("tls://")
    assert list(credentials.iterdir()) == []  # removed with the cluster
    assert_no_job_left(job_name)
