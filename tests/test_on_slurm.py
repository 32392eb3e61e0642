"""compute(cluster="slurm" / "pbs") against a real SLURM on localhost (start it with `bash .ci/start-slurm`):
the same answer as in-process, jobs replaced when one is scancel'ed or reaches its walltime, a clear error
when no job can start, and no job left behind after a return, an error or Ctrl-C."""

import os
import shutil
import signal
import subprocess
import textwrap
import threading
import time
import uuid
from pathlib import Path

import dask
import pytest

import qcmb_dask

from .conftest import (
    NOCP,
    assert_same_answer,
    assert_same_result,
    entries,
    faulty_input,
    mbe_input,
    start_as_a_terminal_would,
)
from .fake_programs import FaultyHarness, calls

ROOT = Path(__file__).resolve().parent.parent


def _slurm_running() -> bool:
    if not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mixed", "allocated"))


SLURM_UP = _slurm_running()
requires_slurm = pytest.mark.skipif(not SLURM_UP, reason="no running SLURM here (start one: bash .ci/start-slurm)")
requires_pbs = pytest.mark.skipif(
    not (SLURM_UP and shutil.which("qsub")), reason="no qsub over a running SLURM (bash .ci/start-slurm installs it)"
)
pytestmark = pytest.mark.slow


@pytest.fixture
def job_name():
    return f"qcmb-test-{uuid.uuid4().hex[:8]}"


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
        **more,
    }


def our_jobs(job_name: str) -> list:
    out = subprocess.run(["squeue", "-h", "-n", job_name, "-o", "%i %T"], capture_output=True, text=True)
    return [tuple(line.split()) for line in out.stdout.splitlines()]


class QueueWatcher(threading.Thread):
    """Polls the batch system during a run: every job id seen, whether one ran, the most listed at once.
    ``lister``: job name -> [(id, state)]; ``runs``: whether a state is running (SLURM's by default)."""

    def __init__(self, job_name: str, lister=None, runs=lambda state: state == "RUNNING"):
        super().__init__(daemon=True)
        self.job_name = job_name
        self.lister = lister or our_jobs
        self.runs = runs
        self.ids: list = []
        self.running = False
        #: the most jobs listed at once
        self.most = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            listed = self.lister(self.job_name)
            self.most = max(self.most, len(listed))
            for job_id, state in listed:
                if job_id not in self.ids:
                    self.ids.append(job_id)
                self.running |= self.runs(state)
            time.sleep(0.2)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join()


def faulty_run_on_slurm(tmp_path: Path, harness, cluster_options: dict, **jobs):
    """The nocp trimer through the faulty program on SLURM, with a store in ``tmp_path``."""
    return qcmb_dask.compute(
        faulty_input(),
        "slurm",
        harnesses=[harness],
        cluster_options=cluster_options,
        cache=tmp_path / "store",
        progress=False,
        **jobs,
    )


def assert_no_job_left(job_name: str, within: float = 20) -> None:
    deadline = time.time() + within
    while our_jobs(job_name) and time.time() < deadline:
        time.sleep(0.25)
    assert our_jobs(job_name) == [], "jobs outlived the compute call"


@requires_slurm
@pytest.mark.slurm
def test_a_water_trimer_on_slurm_equals_the_in_process_answer(job_name, tmp_path):
    mbin = mbe_input(3, keywords={"bsse_type": ["cp", "nocp"]})
    with QueueWatcher(job_name) as queue:
        ours = qcmb_dask.compute(mbin, "slurm", jobs=2, cluster_options=options(job_name, tmp_path), progress=False)
    assert queue.running, "no worker job was ever RUNNING in squeue"
    assert len(queue.ids) == 2
    assert_same_result(ours, qcmb_dask.compute(mbin, "sync", progress=False))
    assert_no_job_left(job_name)


@requires_pbs
@pytest.mark.pbs
def test_pbs_through_qsub_gives_the_same_answer(job_name, tmp_path, reference, monkeypatch):
    monkeypatch.chdir(tmp_path)  # SLURM's qsub wrapper writes the job's output where it is called from
    ours = qcmb_dask.compute(
        mbe_input(3, keywords=NOCP), "pbs", jobs=1, cluster_options=options(job_name, tmp_path), progress=False
    )
    assert_same_answer(ours, reference)
    assert_no_job_left(job_name)


@requires_slurm
@pytest.mark.slurm
def test_a_job_scancelled_mid_run_is_replaced_and_the_answer_holds(job_name, tmp_path, reference, scenario):
    log = tmp_path / "calls.log"
    harness = FaultyHarness(extras={"log": str(log), "sleep": 1.5})
    n = len(qcmb_dask.plan(faulty_input()))
    outcome = {}
    with QueueWatcher(job_name) as queue:
        runner = threading.Thread(
            target=lambda: outcome.setdefault(
                "result", faulty_run_on_slurm(tmp_path, harness, options(job_name, tmp_path), adapt=(2, 2))
            )
        )
        runner.start()
        deadline = time.time() + 120
        while calls(log, "done") < 1 and time.time() < deadline:
            time.sleep(0.1)
        victim = queue.ids[0]
        subprocess.run(["scancel", victim], check=True)
        runner.join(timeout=240)
    assert "result" in outcome, "the run did not finish"
    assert len(queue.ids) >= 3, f"the scancel'ed job was not replaced: jobs seen {queue.ids}"
    assert len(entries(tmp_path / "store")) == n
    scenario.record(
        "SLURM, adapt=(2, 2): one worker job scancel'ed mid-run",
        f"a replacement job was submitted ({len(queue.ids)} jobs in all)",
        calls=calls(log),
        stored=n,
        answer=assert_same_answer(outcome["result"], reference),
    )
    assert_no_job_left(job_name)


@requires_slurm
@pytest.mark.slurm
def test_workers_leave_before_their_jobs_walltime_and_lose_nothing(job_name, tmp_path, reference, scenario, caplog):
    """walltime 20 s, 5 s of margin: each worker starts only the 3.5 s fragments that fit in its job's 15 s and
    leaves; the replacement job is submitted before the old one ends. The run needs about 25 s of fragments."""
    caplog.set_level("INFO", logger="qcmb_dask")
    log = tmp_path / "calls.log"
    harness = FaultyHarness(extras={"log": str(log), "sleep": 3.5})
    n = len(qcmb_dask.plan(faulty_input()))
    with QueueWatcher(job_name) as queue:
        result = faulty_run_on_slurm(tmp_path, harness, options(job_name, tmp_path, walltime="00:00:20"), jobs=1)
    assert len(queue.ids) >= 2, "the run fit in one job's walltime: it tested nothing"
    assert calls(log) == calls(log, "done") == n, "a calculation was killed or computed twice"
    leaving = [r.getMessage() for r in caplog.records if "leaves before its walltime" in r.getMessage()]
    assert leaving and "replacement is submitted now" in leaving[0]
    assert queue.most >= 2, "the replacement was not submitted before the leaving job ended"
    scenario.record(
        "SLURM, jobs=1, walltime 20 s on a run of about 25 s of fragments",
        f"{len(queue.ids) - 1} worker(s) left before their walltime, replaced first; nothing computed twice",
        calls=calls(log),
        stored=len(entries(tmp_path / "store")),
        answer=assert_same_answer(result, reference),
    )
    assert_no_job_left(job_name)


@requires_slurm
@pytest.mark.slurm
def test_jobs_retire_at_their_lifetime_when_not_walltime_aware(job_name, tmp_path, reference, scenario):
    """Dask's --lifetime (qcmb_dask.batch.walltime-aware: false): walltime 20 s -> workers retire after
    17 +/- 1 s, and the fragment a worker runs then runs again on the next."""
    log = tmp_path / "calls.log"
    harness = FaultyHarness(extras={"log": str(log), "sleep": 3.5})
    n = len(qcmb_dask.plan(faulty_input()))
    with dask.config.set({"qcmb_dask.batch.walltime-aware": False}), QueueWatcher(job_name) as queue:
        result = faulty_run_on_slurm(tmp_path, harness, options(job_name, tmp_path, walltime="00:00:20"), jobs=1)
    assert len(queue.ids) >= 2, "the run fit in one job's lifetime: it tested nothing"
    ended = len(queue.ids) - 1
    assert n <= calls(log) <= n + ended
    scenario.record(
        "SLURM, not walltime-aware (--lifetime), walltime 20 s, about 25 s of fragments",
        f"workers retired at their lifetime and {ended} replacement job(s) finished the run",
        calls=calls(log),
        stored=len(entries(tmp_path / "store")),
        answer=assert_same_answer(result, reference),
    )
    assert_no_job_left(job_name)


@requires_slurm
@pytest.mark.slurm
def test_a_requeued_job_is_said_and_its_finished_results_stay(job_name, tmp_path, reference, scenario, caplog):
    """``scontrol requeue`` (what a preemption with PreemptMode=REQUEUE does): the job is killed and queued again;
    the run says so, its fragment in flight runs on the other job, and nothing finished is lost."""
    caplog.set_level("INFO", logger="qcmb_dask")
    log = tmp_path / "calls.log"
    harness = FaultyHarness(extras={"log": str(log), "sleep": 2.0})
    n = len(qcmb_dask.plan(faulty_input()))
    outcome = {}
    with QueueWatcher(job_name) as queue:
        runner = threading.Thread(
            target=lambda: outcome.setdefault(
                "result", faulty_run_on_slurm(tmp_path, harness, options(job_name, tmp_path), jobs=2)
            )
        )
        runner.start()
        deadline = time.time() + 120
        while calls(log, "done") < 2 and time.time() < deadline:
            time.sleep(0.1)
        victim = queue.ids[0]
        subprocess.run(["scontrol", "requeue", victim], check=True)
        runner.join(timeout=240)
    assert "result" in outcome, "the run did not finish"
    said = [r.getMessage() for r in caplog.records if f"job {victim}" in r.getMessage()]
    assert said and "requeued by the batch system" in said[0], said
    assert len(entries(tmp_path / "store")) == n
    assert calls(log, "done") <= n + 1  # at most the fragment in flight ran twice
    scenario.record(
        "SLURM, jobs=2: one job requeued (scontrol requeue) mid-run",
        "said as requeued; its fragment in flight ran on the other job",
        calls=calls(log),
        stored=n,
        answer=assert_same_answer(outcome["result"], reference),
    )
    assert_no_job_left(job_name)


@requires_slurm
@pytest.mark.slurm
def test_a_job_that_can_never_start_gives_a_clear_error_not_a_hang(job_name, tmp_path):
    started = time.time()
    with (
        dask.config.set({"qcmb_dask.batch.worker-timeout": 5}),
        pytest.raises(qcmb_dask.WorkersNeverArrived) as error,
    ):
        qcmb_dask.compute(
            mbe_input(2),
            "slurm",
            jobs=1,
            cluster_options=options(job_name, tmp_path, job_extra_directives=["--hold"]),
            progress=False,
        )
    message = str(error.value)
    assert time.time() - started < 60
    assert "No Dask worker connected in" in message and "batch.worker-timeout=5 s was reached" in message
    assert f"#SBATCH -J {job_name}" in message  # the job script
    assert job_name in message and "JobHeldUser" in message  # squeue's view: held
    assert "interface" in message  # what to change
    assert_no_job_left(job_name)


@requires_slurm
@pytest.mark.slurm
def test_a_job_the_batch_system_refuses_is_reported_at_once_with_its_reason(job_name, tmp_path):
    started = time.time()
    with pytest.raises(qcmb_dask.WorkersNeverArrived) as error:  # JobsRefused is one
        qcmb_dask.compute(
            mbe_input(2), "slurm", jobs=1, cluster_options=options(job_name, tmp_path, memory="64GiB"), progress=False
        )
    assert time.time() - started < 60  # not worker-timeout's 600 s
    assert "refused" in str(error.value)
    assert "Memory specification can not be satisfied" in str(error.value)  # sbatch's own words
    assert "#SBATCH --mem=64G" in str(error.value)
    assert_no_job_left(job_name)


@requires_slurm
@pytest.mark.slurm
def test_ctrl_c_cancels_the_jobs(job_name, tmp_path):
    log = tmp_path / "calls.log"
    script = textwrap.dedent(
        f"""
        import qcmb_dask
        from tests.conftest import faulty_input
        from tests.fake_programs import FaultyHarness
        from tests.test_on_slurm import options
        from pathlib import Path
        if __name__ == "__main__":
            harness = FaultyHarness(extras={{"log": {str(log)!r}, "sleep": 2.0}})
            qcmb_dask.compute(faulty_input(), "slurm", jobs=2, harnesses=[harness], cache=False, progress=False,
                              cluster_options=options({job_name!r}, Path({str(tmp_path)!r})))
        """
    )
    (tmp_path / "run.py").write_text(script)

    proc = start_as_a_terminal_would(tmp_path / "run.py", tmp_path / "stderr.txt")
    deadline = time.time() + 120
    while calls(log) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
    assert our_jobs(job_name), "no job in the queue while fragments run"
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.wait(timeout=60) != 0
    assert "KeyboardInterrupt" in (tmp_path / "stderr.txt").read_text()
    assert_no_job_left(job_name)


@requires_slurm
@pytest.mark.slurm
def test_an_optimization_on_slurm_submits_its_job_once_for_every_point(job_name, tmp_path):
    data = mbe_input(2, keywords={"bsse_type": "nocp"})  # HF/STO-3G
    with QueueWatcher(job_name) as queue:
        result = qcmb_dask.optimize(
            data, "slurm", jobs=1, cluster_options=options(job_name, tmp_path), cache=False, progress=False
        )
    points = result.trajectory_results
    assert len(points) > 3 and len(queue.ids) == 1  # one batch job served every point
    assert len({p.extras["qcmb_dask"]["cluster"]["scheduler"] for p in points}) == 1
    in_process = qcmb_dask.optimize(data, "sync", cache=False, progress=False)
    assert len(in_process.trajectory_results) == len(points)
    assert abs(in_process.properties.return_energy - result.properties.return_energy) < 1e-10
    assert_no_job_left(job_name)
