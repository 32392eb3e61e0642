"""Faults with real worker processes: a worker SIGKILLed mid-run, a fragment that kills its worker every
time, a hung fragment stopped by timeout_per_task, workers that retire on a short lifetime. Each run is
checked against QCManyBody's answer and counts the calculations the (PySCF-backed) faulty program ran."""

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import dask
import pytest

import qcmb_dask
from qcmb_dask.errors import FragmentsFailed

from .conftest import assert_same_answer, entries, faulty_input, start_as_a_terminal_would, two_worker_client
from .fake_programs import FaultyHarness, calls

pytestmark = pytest.mark.slow


def test_a_worker_sigkilled_mid_run_costs_only_its_fragment(scenario, tmp_path, reference):
    log = tmp_path / "calls.log"
    harness = FaultyHarness(extras={"log": str(log), "sleep": 1.0})
    n = len(qcmb_dask.plan(faulty_input()))
    with two_worker_client() as client:
        outcome = {}
        runner = threading.Thread(
            target=lambda: outcome.setdefault(
                "result",
                qcmb_dask.compute(
                    faulty_input(), client, harnesses=[harness], cache=tmp_path / "store", progress=False
                ),
            )
        )
        runner.start()
        deadline = time.time() + 120
        while calls(log) < 1 and time.time() < deadline:
            time.sleep(0.05)
        victim = int(log.read_text().split()[2])  # the pid of a worker inside a calculation
        os.kill(victim, signal.SIGKILL)
        runner.join(timeout=300)
    assert calls(log, "done") >= n
    assert calls(log) >= n + 1  # the killed calculation ran again on the restarted worker
    assert len(entries(tmp_path / "store")) == n
    scenario.record(
        "a worker SIGKILLed inside a calculation",
        "its calculation reran on the restarted worker",
        calls=calls(log),
        stored=n,
        answer=assert_same_answer(outcome["result"], reference),
    )


def test_ctrl_c_on_the_embedded_cluster_stops_it_and_a_rerun_computes_only_the_rest(scenario, tmp_path, reference):
    """Ctrl-C in a terminal sends SIGINT to the whole foreground process group: the client and its workers."""
    n = len(qcmb_dask.plan(faulty_input()))
    log, store = tmp_path / "calls.log", tmp_path / "store"
    script = textwrap.dedent(
        f"""
        import qcmb_dask
        from tests.conftest import faulty_input
        from tests.fake_programs import FaultyHarness
        if __name__ == "__main__":
            harness = FaultyHarness(extras={{"log": {str(log)!r}, "sleep": 1.0}})
            qcmb_dask.compute(faulty_input(), harnesses=[harness], cache={str(store)!r}, progress=False)
        """
    )
    (tmp_path / "run.py").write_text(script)

    proc = start_as_a_terminal_would(tmp_path / "run.py", tmp_path / "stderr.txt")
    deadline = time.time() + 120
    while len(entries(store)) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
    os.killpg(proc.pid, signal.SIGINT)
    interrupted = time.time()
    assert proc.wait(timeout=60) != 0
    stopped_after = time.time() - interrupted
    assert stopped_after < 30
    assert "KeyboardInterrupt" in (tmp_path / "stderr.txt").read_text()
    deadline = time.time() + 30
    while _group_alive(proc.pid) and time.time() < deadline:
        time.sleep(0.2)
    assert not _group_alive(proc.pid), "worker processes outlived the interrupted client"
    stored = len(entries(store))
    assert 2 <= stored < n
    before = calls(log)
    result = qcmb_dask.compute(
        faulty_input(), "sync", harnesses=[FaultyHarness(extras={"log": str(log)})], cache=store, progress=False
    )
    assert calls(log) - before == n - stored
    scenario.record(
        "Ctrl-C (SIGINT to the client and its workers) on the embedded cluster, then rerun",
        f"client stopped {stopped_after:.1f} s after SIGINT, no process left; {stored} of {n} were stored, "
        f"the rerun computed the other {n - stored}",
        calls=calls(log),
        stored=n,
        answer=assert_same_answer(result, reference),
    )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_fragment_that_kills_its_worker_every_time_fails_alone(scenario, tmp_path, reference):
    log = tmp_path / "calls.log"
    harness = FaultyHarness(extras={"log": str(log), "crash_nreal": 3})
    n = len(qcmb_dask.plan(faulty_input()))
    with dask.config.set({"qcmb_dask.allowed-failures": 1}):
        partial = qcmb_dask.compute(
            faulty_input(), harnesses=[harness], cache=tmp_path / "store", on_error="partial", progress=False
        )
    [failure] = partial.failures
    assert (failure.nbody, failure.error_type) == (3, "worker_lost")
    assert "2 tries" in failure.message and "worker process died" in failure.message
    assert calls(log) == n - 1 + 2  # the trimer tried twice (allowed-failures 1), everything else once
    assert len(entries(tmp_path / "store")) == n - 1
    assert partial.level.interaction_energy("nocp") == pytest.approx(
        reference.properties.nocp_corrected_interaction_energy_through_2_body, abs=1e-9
    )
    scenario.record(
        "the trimer kills its worker every time (allowed-failures 1)",
        "only the trimer fails (worker_lost, 2 tries); partial through 2-body",
        calls=calls(log),
        stored=n - 1,
        answer="2-body IE = QCManyBody's 2-body IE",
    )


def test_timeout_per_task_stops_a_hung_fragment_and_names_it(scenario, tmp_path):
    log = tmp_path / "calls.log"
    harness = FaultyHarness(extras={"log": str(log), "hang_nreal": 3})
    n = len(qcmb_dask.plan(faulty_input()))
    start = time.time()
    with dask.config.set({"qcmb_dask.allowed-failures": 1}), pytest.raises(FragmentsFailed) as info:
        qcmb_dask.compute(
            faulty_input(), harnesses=[harness], cache=tmp_path / "store", timeout_per_task=4, progress=False
        )
    elapsed = time.time() - start
    [failure] = info.value.failures
    assert (failure.nbody, failure.error_type) == (3, "timeout")
    assert "timeout_per_task=4 s" in str(info.value)
    assert elapsed < 120  # not the hour the fragment would hang
    assert calls(log) == n - 1 + 2
    assert len(entries(tmp_path / "store")) == n - 1
    scenario.record(
        "the trimer hangs; timeout_per_task=4 s (allowed-failures 1)",
        "worker ended twice; FragmentsFailed names the trimer (timeout)",
        calls=calls(log),
        stored=n - 1,
    )


def test_timeout_per_task_is_refused_where_it_cannot_stop_anything(tmp_path):
    with pytest.raises(ValueError, match="needs worker processes"):
        qcmb_dask.compute(faulty_input(), "sync", harnesses=[FaultyHarness()], timeout_per_task=5, cache=False)
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
        pytest.raises(ValueError, match="needs a nanny"),
    ):
        qcmb_dask.compute(faulty_input(), client, harnesses=[FaultyHarness()], timeout_per_task=5, cache=False)


@contextlib.contextmanager
def batch_system(scheduler_address, jobs=2, lifetime="4s", stagger="1s"):
    """A stand-in for a batch system whose jobs reach their walltime: it keeps ``jobs`` worker processes alive,
    each ``dask worker --lifetime`` that retires on its own, and starts a new one whenever one ends (as
    dask-jobqueue's adapt does). LocalCluster's own ``lifetime_restart`` is not used: in distributed 2026.8 its
    nannies did not bring workers back, leaving none."""
    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler_address, "--nthreads", "1"]
    command += ["--lifetime", lifetime, "--lifetime-stagger", stagger, "--no-dashboard"]
    procs, stop = [], threading.Event()

    def keep_jobs_running():
        while not stop.is_set():
            for _ in range(jobs - sum(p.poll() is None for p in procs)):
                procs.append(subprocess.Popen(command, cwd=root, stderr=subprocess.DEVNULL))
            time.sleep(0.2)

    runner = threading.Thread(target=keep_jobs_running, daemon=True)
    runner.start()
    try:
        yield procs
    finally:
        stop.set()
        runner.join()
        for proc in procs:
            proc.kill()
            proc.wait()


def test_workers_that_retire_at_their_walltime_still_finish_the_run(scenario, tmp_path, reference):
    """Workers leave mid-run and take the results they held with them (no other worker is free to receive
    them); the store makes the recomputation of those a read, so the run finishes with the right answer."""
    from distributed import Client, LocalCluster

    log = tmp_path / "calls.log"
    # 7 fragments of 2 s on 2 workers outlast any first worker's 3-5 s lifetime: a replacement computes some (with
    # 1 s, the first two could finish all 7 before retiring, the faster the submission the likelier)
    harness = FaultyHarness(extras={"log": str(log), "sleep": 2.0})
    n = len(qcmb_dask.plan(faulty_input()))
    with (
        LocalCluster(n_workers=0, dashboard_address=":0") as cluster,
        Client(cluster) as client,
        batch_system(cluster.scheduler_address) as jobs,
    ):
        result = qcmb_dask.compute(
            faulty_input(), client, harnesses=[harness], cache=tmp_path / "store", progress=False
        )
        started_jobs = len(jobs)
    pids = {line.split()[2] for line in Path(log).read_text().splitlines()}
    assert len(pids) > 2 and started_jobs > 2  # workers were replaced during the run
    # Finished results the retiring workers took with them came back from the store, not the program. A fragment
    # still running when its worker left can run again elsewhere (the scheduler reschedules it as soon as the
    # worker is removed, while its process may still finish): at most one per worker that ended.
    assert n <= calls(log, "done") <= n + started_jobs - 1
    assert len(entries(tmp_path / "store")) == n
    scenario.record(
        "workers retire at a 4±1 s walltime and are replaced",
        f"{started_jobs} worker processes; lost results reread from the store; {calls(log, 'done') - n} ran twice",
        calls=calls(log),
        stored=n,
        answer=assert_same_answer(result, reference),
    )


@contextlib.contextmanager
def jobs_with_a_walltime(scheduler_address, walltime_s: float, margin_s: float, logs: Path, jobs: int = 2):
    """A stand-in for a batch system with walltime-aware workers: each job is a ``dask worker`` process started
    as qcmb_dask's job script starts it (its deadline in the environment, the walltime preload), killed at its
    walltime as the batch system kills it, and replaced when it ends; its log in ``logs``."""
    from qcmb_dask import keys

    root = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler_address, "--nthreads", "1"]
    command += ["--preload", keys.WALLTIME_PRELOAD, "--no-dashboard"]
    procs, ends, stop = [], {}, threading.Event()

    def keep_jobs_running():
        while not stop.is_set():
            for _ in range(jobs - sum(p.poll() is None for p in procs)):
                deadline = time.time() + walltime_s
                environment = {
                    **os.environ,
                    keys.DEADLINE_VARIABLE: str(deadline),
                    keys.WALLTIME_VARIABLE: str(walltime_s),
                    keys.MARGIN_VARIABLE: str(margin_s),
                }
                log = open(logs / f"job-{len(procs)}.log", "w")  # noqa: SIM115  (the job's own, closed with it)
                proc = subprocess.Popen(command, cwd=root, stderr=log, env=environment)
                log.close()
                procs.append(proc)
                ends[proc.pid] = deadline
            for proc in procs:
                if proc.poll() is None and time.time() > ends[proc.pid]:
                    proc.kill()  # the walltime: whatever runs in the job is lost
                    ends[proc.pid] = float("inf")
            time.sleep(0.1)

    runner = threading.Thread(target=keep_jobs_running, daemon=True)
    runner.start()
    try:
        yield procs, ends
    finally:
        stop.set()
        runner.join()
        for proc in procs:
            proc.kill()
            proc.wait()


def test_walltime_aware_workers_leave_before_their_walltime_and_lose_no_calculation(scenario, tmp_path, reference):
    """Each worker starts only the fragments that fit before its job's end and leaves after the last one: no
    calculation is killed at a walltime, none runs twice, and the run finishes on the replacements."""
    from distributed import Client, LocalCluster

    log = tmp_path / "calls.log"
    harness = FaultyHarness(extras={"log": str(log), "sleep": 2.5})
    n = len(qcmb_dask.plan(faulty_input()))
    with (
        LocalCluster(n_workers=0, dashboard_address=":0") as cluster,
        Client(cluster) as client,
        jobs_with_a_walltime(cluster.scheduler_address, walltime_s=12.0, margin_s=4.0, logs=tmp_path) as (jobs, ends),
    ):
        result = qcmb_dask.compute(
            faulty_input(), client, harnesses=[harness], cache=tmp_path / "store", progress=False
        )
        killed = sum(1 for end in ends.values() if end == float("inf"))
        started_jobs = len(jobs)
    # workers that decided to leave and closed themselves (an idle one may still be closing at its walltime)
    left = sum("Reason: qcmb-dask-walltime" in log.read_text() for log in tmp_path.glob("job-*.log"))
    assert started_jobs > 2 and left >= 1  # workers left on their own, before their walltime, and were replaced
    assert calls(log) == calls(log, "done") == n  # nothing killed mid-calculation, nothing computed twice
    assert len(entries(tmp_path / "store")) == n
    scenario.record(
        "walltime-aware workers on 12 s jobs (4 s margin), 2.5 s+ fragments",
        f"{started_jobs} jobs: {left} left on their own, {killed} reached their walltime (idle); every calculation "
        "ran once",
        calls=calls(log),
        stored=n,
        answer=assert_same_answer(result, reference),
    )


@contextlib.contextmanager
def scheduler_and_workers(folder: Path, nworkers: int = 2):
    """A ``dask scheduler`` and ``dask worker`` processes of their own, on loopback: a scheduler that can die
    while this process lives (the embedded one and dask-jobqueue's run inside the client's process)."""
    root = Path(__file__).resolve().parent.parent
    folder.mkdir(parents=True, exist_ok=True)
    address_file = folder / "scheduler.json"
    command = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": root}
    scheduler = subprocess.Popen(
        [*command, "--dashboard-address", ":0", "--scheduler-file", str(address_file)], **quiet
    )
    deadline = time.time() + 60
    while not address_file.exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    address = __import__("json").loads(address_file.read_text())["address"]
    worker = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--host", "127.0.0.1"]
    workers = [subprocess.Popen(worker, **quiet) for _ in range(nworkers)]
    try:
        yield address, scheduler
    finally:
        for process in [*workers, scheduler]:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(timeout=30)


def test_the_scheduler_killed_mid_run_ends_it_clearly_and_the_rerun_computes_only_the_rest(
    scenario, tmp_path, reference
):
    log, store_dir = tmp_path / "calls.log", tmp_path / "store"
    harness = FaultyHarness(extras={"log": str(log), "sleep": 0.5})
    n = len(qcmb_dask.plan(faulty_input()))

    def kill_after_two(scheduler):
        deadline = time.time() + 120
        while calls(log, "done") < 2 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the second result reaches the store
        os.kill(scheduler.pid, signal.SIGKILL)

    with scheduler_and_workers(tmp_path / "first") as (address, scheduler):
        threading.Thread(target=kill_after_two, args=(scheduler,), daemon=True).start()
        started = time.time()
        with pytest.raises(qcmb_dask.SchedulerLost) as lost:
            qcmb_dask.compute(faulty_input(), address, harnesses=[harness], cache=store_dir, progress=False)
        ended_after = time.time() - started
    message = str(lost.value)
    assert f"The scheduler at {address} stopped answering" in message
    assert f"are in the result store at {store_dir}" in message and "only the missing" in message
    assert lost.value.stored >= 2
    kept = len(entries(store_dir))  # also what the workers finished after the scheduler had gone
    assert lost.value.stored <= kept < n
    before = calls(log)
    with scheduler_and_workers(tmp_path / "second") as (address, _):
        result = qcmb_dask.compute(faulty_input(), address, harnesses=[harness], cache=store_dir, progress=False)
    assert calls(log) - before == n - kept  # the rerun computed only what was not kept
    scenario.record(
        "a scheduler of its own SIGKILLed mid-run (after 2 results), then a rerun on a new one",
        f"SchedulerLost after {ended_after:.0f} s naming the {lost.value.stored} stored; the rerun computed the "
        f"other {n - kept}",
        calls=calls(log),
        stored=len(entries(store_dir)),
        answer=assert_same_answer(result, reference),
    )
