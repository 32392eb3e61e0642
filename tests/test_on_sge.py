"""compute(cluster="sge") against a real Son of Grid Engine on localhost (start it with `bash .ci/start-sge`), as
tests/test_on_slurm.py and tests/test_at_a_site.py do against SLURM: the same answer as in-process, a site's Dask
config in the submitted job, a busy queue waited for with SGE's reason, SIGTERM to the driver, and the driver
submitted as an SGE job of its own (`qcmb-dask submit`), stopped with qdel and resumed.

SGE's commands are first on PATH only inside these tests (/usr/bin/qsub and qstat are SLURM's PBS wrappers here)."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import dask
import pytest

import qcmb_dask

from .conftest import (
    assert_same_answer,
    assert_same_result,
    entries,
    faulty_input,
    mbe_input,
    start_as_a_terminal_would,
)
from .fake_programs import FaultyHarness, calls
from .test_on_slurm import QueueWatcher as SlurmQueueWatcher
from .test_queue_sge import requires_sge, sge_environment

ROOT = Path(__file__).resolve().parent.parent
HEXAMER = str(ROOT / "examples" / "water-hexamer.json")
pytestmark = [pytest.mark.slow, pytest.mark.sge, requires_sge]


@pytest.fixture(autouse=True)
def _sges_commands(monkeypatch):
    for key, value in (sge_environment() or {}).items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def job_name():
    return f"qcmb-sge-{uuid.uuid4().hex[:8]}"


def options(job_name: str, tmp_path: Path, **more) -> dict:
    """One-core jobs that stay on this machine: scheduler and workers on loopback, no dashboard port."""
    return {
        "name": job_name,
        "cores": 1,
        "memory": "1GiB",
        "walltime": "00:10:00",
        "log_directory": str(tmp_path / "logs"),
        "interface": "lo",
        "scheduler_options": {"interface": "lo", "dashboard_address": ":0"},
        "job_script_prologue": [f"cd {ROOT}"],  # workers import tests.fake_programs
        # what a one-core job asks for, as a site writes it (the shipped profile's numbers are sized to cores)
        "job_extra_directives": ["-pe smp 1"],
        "resource_spec": "h_vmem=1G",
        **more,
    }


def our_jobs(job_name: str) -> list[tuple[str, str]]:
    """(id, SGE state) of the jobs named ``job_name``, from SGE's ``qstat -xml``."""
    out = subprocess.run(["qstat", "-xml", "-u", "*"], capture_output=True, text=True, check=True).stdout
    return [
        (job.findtext("JB_job_number"), job.findtext("state"))
        for job in ET.fromstring(out).iter("job_list")
        if job.findtext("JB_name") == job_name
    ]


def QueueWatcher(job_name: str) -> SlurmQueueWatcher:  # noqa: N802  (used as the SLURM tests' class is)
    """The SLURM tests' watcher, reading SGE's qstat (a state with r in it runs)."""
    return SlurmQueueWatcher(job_name, lister=our_jobs, runs=lambda state: "r" in state)


def assert_no_job_left(job_name: str, within: float = 20) -> None:
    deadline = time.time() + within
    while our_jobs(job_name) and time.time() < deadline:
        time.sleep(0.25)
    assert our_jobs(job_name) == [], "jobs outlived the compute call"


def test_a_water_dimer_on_sge_equals_the_in_process_answer(job_name, tmp_path):
    mbin = mbe_input(2, keywords={"bsse_type": ["cp", "nocp"]})  # HF/STO-3G
    with QueueWatcher(job_name) as queue:
        ours = qcmb_dask.compute(mbin, "sge", jobs=1, cluster_options=options(job_name, tmp_path), progress=False)
    assert queue.running, "no worker job was ever running in SGE's qstat"
    assert len(queue.ids) == 1
    assert_same_result(ours, qcmb_dask.compute(mbin, "sync", progress=False))
    assert_no_job_left(job_name)


def test_a_sites_dask_config_is_honoured_in_the_submitted_job(job_name, tmp_path):
    site = tmp_path / "site-dask"
    site.mkdir()
    (site / "jobqueue.yaml").write_text(
        textwrap.dedent(
            """
            jobqueue:
              sge:
                walltime: '00:30:00'
                queue: all.q
                resource-spec: 'h_vmem=3G'
                job-extra: ['-ac site=config', '-pe smp 1']   # dask-jobqueue's old name
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
            from tests.test_on_sge import options
            if __name__ == "__main__":
                run_options = options({job_name!r}, Path({str(tmp_path)!r}))
                for key in ("walltime", "resource_spec", "job_extra_directives"):
                    del run_options[key]  # the site's apply
                result = qcmb_dask.compute(mbe_input(2), "sge", jobs=1, cache=False, progress=False,
                                           cluster_options=run_options)
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
            seen = subprocess.run(["qstat", "-j", job_id], capture_output=True, text=True).stdout
        time.sleep(0.2)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "h_rt=1800" in seen and "h_vmem=3G" in seen, seen  # hard resource_list
    assert "hard_queue_list:            all.q" in seen and "context:                    site=config" in seen, seen
    assert "FutureWarning" not in err  # dask-jobqueue's own warning about job-extra: translated already
    assert json.loads(out.splitlines()[-1]) == pytest.approx(
        qcmb_dask.compute(mbe_input(2), "sync", progress=False).return_result, abs=1e-9
    )
    assert_no_job_left(job_name)


def test_a_busy_queue_is_waited_for_with_its_reason_and_nothing_is_cancelled(job_name, tmp_path, caplog):
    slots = subprocess.run(["qconf", "-sq", "all.q"], capture_output=True, text=True).stdout
    slots = next(line.split()[1] for line in slots.splitlines() if line.startswith("slots"))
    blocker_job = f"-terse -N {job_name}-blocker -pe smp {slots} -b y -j y -o {tmp_path / 'blocker.out'} sleep 10"
    blocker = subprocess.run(["qsub", *blocker_job.split()], capture_output=True, text=True, check=True)
    blocker = blocker.stdout.strip()
    try:
        with (
            dask.config.set({"qcmb_dask.batch.queue-report-interval": 2}),
            caplog.at_level(logging.INFO, logger="qcmb_dask"),
            QueueWatcher(job_name) as queue,
        ):
            result = qcmb_dask.compute(
                mbe_input(2), "sge", jobs=1, cluster_options=options(job_name, tmp_path), progress=False
            )
    finally:
        subprocess.run(["qdel", blocker], capture_output=True)
    waiting = [r.getMessage() for r in caplog.records if "waiting for 1 SGE job(s) to start" in r.getMessage()]
    pending = [m for m in waiting if "pending" in m]
    # qw until the scheduler has looked at the job, then qstat -j's scheduling info
    assert any("1 pending (All queues dropped because of overload or full)" in m for m in pending), waiting
    assert all("1 pending (qw)" in m or "All queues dropped" in m for m in pending), waiting
    assert len(queue.ids) == 1  # the job kept its place in the queue: never cancelled and resubmitted
    assert result.return_result == pytest.approx(
        qcmb_dask.compute(mbe_input(2), "sync", progress=False).return_result, abs=1e-9
    )
    assert_no_job_left(job_name)


def test_sigterm_to_the_driver_cancels_the_jobs_and_a_rerun_computes_only_the_rest(job_name, tmp_path):
    log, store = tmp_path / "calls.log", tmp_path / "store"
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import qcmb_dask
            from pathlib import Path
            from tests.conftest import faulty_input
            from tests.fake_programs import FaultyHarness
            from tests.test_on_sge import options
            if __name__ == "__main__":
                harness = FaultyHarness(extras={{"log": {str(log)!r}, "sleep": 2.0}})
                qcmb_dask.compute(faulty_input(), "sge", jobs=2, harnesses=[harness], cache={str(store)!r},
                                  progress=False, cluster_options=options({job_name!r}, Path({str(tmp_path)!r})))
            """
        )
    )
    proc = start_as_a_terminal_would(script, tmp_path / "stderr.txt")
    deadline = time.time() + 120
    while len(entries(store)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
    assert our_jobs(job_name), "no SGE job while fragments run"
    os.kill(proc.pid, signal.SIGTERM)
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


def test_submit_runs_the_driver_as_an_sge_job_that_qdel_stops_cleanly_and_a_resubmit_finishes(job_name, tmp_path):
    store, out = tmp_path / "store", tmp_path / "result.json"
    command = [
        sys.executable, "-m", "qcmb_dask.cli", "submit", HEXAMER, "--cluster", "sge", "--cache", str(store),
        "--out", str(out), "--cluster-option", f"name={job_name}", "--cluster-option", "cores=1",
        "--cluster-option", "memory=1GiB", "--cluster-option", "interface=lo", "--cluster-option",
        "scheduler_options={interface: lo, dashboard_address: ':0'}", "--cluster-option",
        f"log_directory={tmp_path / 'logs'}", "--cluster-option", "job_extra_directives=['-pe smp 1']",
        "--cluster-option", "resource_spec=h_vmem=1G",
        "--driver-memory", "2G", "--driver-walltime", "00:30:00", "--jobs", "2",
    ]  # fmt: skip

    def submitted() -> str:
        answer = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert answer.returncode == 0, answer.stderr
        assert "in the queue:  qstat -j" in answer.stdout and "qdel" in answer.stdout
        return answer.stdout.split("Submitted driver job ")[1].split()[0]

    def status() -> str:
        return subprocess.run(
            [sys.executable, "-m", "qcmb_dask.cli", "status", HEXAMER, "--cache", str(store)],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout

    driver = submitted()
    driver_log = tmp_path / "logs" / "qcmb-dask-driver.log"
    deadline = time.time() + 180
    while len(entries(store)) < 10 and time.time() < deadline:
        time.sleep(0.5)
    assert len(entries(store)) >= 10, driver_log.read_text() if driver_log.exists() else "no driver log"
    # -notify: SIGUSR2 now and SIGKILL a minute later; the driver's shell passes SIGUSR2 on as SIGTERM
    subprocess.run(["qdel", driver], check=True, capture_output=True)
    assert_no_job_left(job_name, within=30)  # its worker jobs went with it, before SGE's SIGKILL
    assert "SIGTERM received" in driver_log.read_text()  # SGE sent SIGUSR2: passed on as SIGTERM
    partial = status()
    done = int(partial.split(": ")[1].split(" of ")[0])
    assert 10 <= done < 82 and "still to compute" in partial, partial

    driver = submitted()  # resumes
    deadline = time.time() + 300
    while not out.exists() and time.time() < deadline:
        time.sleep(1)
    assert out.exists(), driver_log.read_text()
    assert "82 of 82 calculations in the store" in status() and "complete" in status()
    saved = qcmb_dask.load_result(out)
    again = qcmb_dask.compute(HEXAMER, "sync", cache=store, progress=False)  # every fragment from the store
    assert again.extras["qcmb_dask"]["computed"] == 0
    assert saved.properties.cp_corrected_interaction_energy == pytest.approx(
        again.properties.cp_corrected_interaction_energy, abs=1e-12
    )


def test_a_driver_at_its_soft_walltime_cancels_its_jobs_and_keeps_what_is_done(job_name, tmp_path):
    """--driver-walltime 40 s: s_rt at 20 s (half, where 300 s is more than half), when SGE sends SIGUSR1."""
    store = tmp_path / "store"
    command = [
        sys.executable, "-m", "qcmb_dask.cli", "submit", HEXAMER, "--cluster", "sge", "--cache", str(store),
        "--out", str(tmp_path / "result.json"), "--cluster-option", f"name={job_name}", "--cluster-option", "cores=1",
        "--cluster-option", "memory=1GiB", "--cluster-option", "interface=lo", "--cluster-option",
        "scheduler_options={interface: lo, dashboard_address: ':0'}", "--cluster-option",
        f"log_directory={tmp_path / 'logs'}", "--cluster-option", "job_extra_directives=['-pe smp 1']",
        "--cluster-option", "resource_spec=h_vmem=1G",
        "--driver-memory", "2G", "--driver-walltime", "00:00:40", "--jobs", "1",
    ]  # fmt: skip
    answer = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert answer.returncode == 0, answer.stderr
    driver = answer.stdout.split("Submitted driver job ")[1].split()[0]
    driver_log = tmp_path / "logs" / "qcmb-dask-driver.log"
    deadline = time.time() + 90
    while any(job_id == driver for job_id, _ in our_jobs("qcmb-dask-driver")) and time.time() < deadline:
        time.sleep(0.5)
    log = driver_log.read_text()
    assert "SIGTERM received" in log, log  # SIGUSR1 at s_rt, passed on as SIGTERM: not killed at h_rt
    assert_no_job_left(job_name, within=10)
    assert 0 < len(entries(store)) < 82, "the run fit before the soft limit: it tested nothing"


def test_a_worker_job_qdeleted_mid_run_is_replaced_and_the_answer_holds(job_name, tmp_path, reference, caplog):
    """A worker crash as SGE sees it: the job is deleted under its worker; SGE's words are said, a replacement is
    submitted, and the finished results stay."""
    caplog.set_level("INFO", logger="qcmb_dask")
    log = tmp_path / "calls.log"
    harness = FaultyHarness(extras={"log": str(log), "sleep": 1.5})
    n = len(qcmb_dask.plan(faulty_input()))
    outcome = {}
    with QueueWatcher(job_name) as queue:
        runner = threading.Thread(
            target=lambda: outcome.setdefault(
                "result",
                qcmb_dask.compute(
                    faulty_input(), "sge", harnesses=[harness], cluster_options=options(job_name, tmp_path),
                    cache=tmp_path / "store", progress=False, jobs=2,
                ),
            )
        )  # fmt: skip
        runner.start()
        deadline = time.time() + 120
        while calls(log, "done") < 1 and time.time() < deadline:
            time.sleep(0.1)
        victim = queue.ids[0]
        subprocess.run(["qdel", victim], check=True, capture_output=True)
        runner.join(timeout=240)
    assert "result" in outcome, "the run did not finish"
    assert len(queue.ids) >= 3, f"the deleted job was not replaced: jobs seen {queue.ids}"
    assert any(f"job {victim} " in r.getMessage() for r in caplog.records), "the deleted job was not said"
    assert len(entries(tmp_path / "store")) == n
    assert_same_answer(outcome["result"], reference)
    assert_no_job_left(job_name)


def test_workers_leave_before_their_sge_jobs_walltime(job_name, tmp_path, caplog):
    """The deadline the job script exports works under SGE's shell too: workers leave before h_rt and are
    replaced first; nothing is computed twice."""
    caplog.set_level("INFO", logger="qcmb_dask")
    log = tmp_path / "calls.log"
    harness = FaultyHarness(extras={"log": str(log), "sleep": 3.5})
    n = len(qcmb_dask.plan(faulty_input()))
    short = options(job_name, tmp_path, walltime="00:00:20")
    with QueueWatcher(job_name) as queue:
        qcmb_dask.compute(
            faulty_input(), "sge", harnesses=[harness], cluster_options=short, cache=tmp_path / "store", progress=False,
            jobs=1,
        )  # fmt: skip
    assert len(queue.ids) >= 2, "the run fit in one job's walltime: it tested nothing"
    assert calls(log) == calls(log, "done") == n
    assert any("leaves before its walltime" in r.getMessage() for r in caplog.records)
    assert_no_job_left(job_name)
