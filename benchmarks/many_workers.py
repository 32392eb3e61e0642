"""A many-node rehearsal on one machine: what 256 workers and their fragments do to one Dask scheduler.

A 3-body nocp expansion of a water cluster (MP2/aug-cc-pVTZ) through ``sleeping_program.py``, a QCEngine program
that computes nothing: each calculation sleeps the cost model's estimate of it times a deterministic lognormal
noise (sigma 0.25, drawn from the fragment's geometry), divided by a speed-up chosen so that the median fragment
sleeps ``--median`` seconds (10 s; the trimers, which are most of the calculations). The cluster size gives the
workload: the smallest cluster with at least ``--per-slot`` calculations per slot (16: 256 slots, (H2O)30, 4525
calculations, about three minutes a run).

The cluster: a ``dask scheduler`` in a process of its own (``python -m distributed.cli.dask_scheduler``, plain
TCP on loopback, with the settings of the schedulers qcmb_dask starts given as ``DASK_`` variables: the preloads
``qcmb_dask.clusters.preload`` and the live page's, worker-saturation 1.0, allowed-failures 3), so that its CPU
is its own; and ``--workers`` Dask workers (256) of ``--threads`` threads (1) each, run ``--workers /
--processes`` to a process (16 processes of 16 workers): every worker is a ``distributed.Worker`` with its own
connection to the scheduler, its own heartbeats and its own stream, as a node's would be, while 256 worker
processes would not fit in 2 cores' memory and start-up. A process of workers stands for one batch job of that
many nodes. Its workers' statistical profiler and GIL monitor are off and their system monitor samples every 5 s
(at a site each node pays those on cores of its own; here they would share 2 cores). The client is this process,
through ``qcmb_dask.compute(input, client, harnesses=[...], cache=<a fresh store>)``.

Two runs of the same workload, each in a fresh store:
- steady: every worker stays;
- churn: ``--kills`` times during the run (evenly spaced in the expected span) one process of workers is
  SIGKILLed, as a batch job ending, and a new one started at once, as its replacement job.

Per run: makespan (the ``compute`` call) and the simulated parallel efficiency, (sum of the fragments' sleep
seconds) / (slots x makespan), the issue's figure (goal: at least 95 % at 256 workers for fragments of 10 s or
more); the fragments' span and the same fragments replayed in the order they started with no time between them
(what the tail costs, apart from what dispatching costs; slots x the difference / calculations is the time a slot
stood between two fragments, the worker's share included); the scheduler's CPU (``psutil`` on its pid) per
calculation, raw and net of its idle rate with every worker connected (heartbeats), measured before the runs;
events per second: the scheduler's ``transition_counter`` and the messages it sent on its batched streams to
workers and clients (streams of killed workers leave the count with them); this process's CPU (planning,
submission, the results' arrival). Churn adds what was lost: workers killed, attempts killed mid-sleep and their
sleep seconds (from the program's start and end lines), calculations computed twice, results read back from the
store (held on a killed worker, needed again), and how long each replacement took to connect.

    python benchmarks/many_workers.py           # 256 workers in 16 processes, 4525 calculations, two runs
    python benchmarks/many_workers.py --quick   # 16 workers in 4 processes, 1 s fragments, for CI (< 60 s)
    python benchmarks/many_workers.py --workers 64 --processes 16 --threads 4   # 64 workers of 4 threads
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import parser
from sleeping_program import SleepingHarness
from systems import mbe_input

HERE = Path(__file__).resolve().parent
METHOD, BASIS = "mp2", "aug-cc-pvtz"
SIGMA = 0.25
#: Dask settings of the worker processes: monitoring each node pays on its own cores at a site
WORKER_HOST_CONFIG = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.admin.system-monitor.gil.enabled": False,
}


# -- the worker processes (this script run with --serve) ------------------------------------------------------------


def serve(address: str, count: int, threads: int, name: str) -> None:
    """Run ``count`` workers of ``threads`` threads in this process until it is killed."""
    import asyncio

    import dask

    dask.config.set(WORKER_HOST_CONFIG)
    from qcmb_dask.worker.warmup import import_programs

    # What qcmb_dask runs on the workers of the clusters it starts: the imports, and QCEngine's description of the
    # machine, which its first calculations in several threads of one process would otherwise race to fill.
    import_programs(["sleeping"])

    async def run() -> None:
        from distributed import Worker

        workers = [
            Worker(address, nthreads=threads, host="127.0.0.1", name=f"{name}-{i}", memory_limit=0, dashboard=False)
            for i in range(count)
        ]
        await asyncio.gather(*workers)
        await asyncio.gather(*(worker.finished() for worker in workers))

    asyncio.run(run())


# -- the cluster -------------------------------------------------------------------------------------------------


def scheduler_environment() -> dict[str, str]:
    """This environment plus the settings of a scheduler qcmb_dask starts, as ``DASK_`` variables."""
    from qcmb_dask.clusters import scheduler_settings

    env = dict(os.environ)
    for key, value in scheduler_settings().items():
        env["DASK_" + key.upper().replace(".", "__").replace("-", "_")] = repr(value)
    return env


class Cluster:
    """A scheduler process and processes of workers on loopback; each process of workers stands for one batch job."""

    def __init__(self, folder: Path, workers: int, processes: int, threads: int):
        self.folder, self.threads = folder, threads
        processes = max(1, min(processes, workers))
        self.sizes = [workers // processes + (i < workers % processes) for i in range(processes)]
        self.slots = workers * threads
        self.jobs: list[tuple[subprocess.Popen, int]] = []  # (process, workers in it), replacements appended
        self.started = 0
        self.scheduler: subprocess.Popen | None = None
        self.address = ""

    def start(self) -> None:
        address_file = self.folder / "scheduler.json"
        command = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0"]
        command += ["--dashboard-address", "127.0.0.1:0", "--scheduler-file", str(address_file)]
        with open(self.folder / "scheduler.log", "w") as log:
            self.scheduler = subprocess.Popen(command, env=scheduler_environment(), stdout=log, stderr=log)
        deadline = time.time() + 120
        while not address_file.exists() and time.time() < deadline:
            if self.scheduler.poll() is not None:
                raise RuntimeError(f"the scheduler exited; see {self.folder / 'scheduler.log'}")
            time.sleep(0.1)
        time.sleep(0.3)  # the file is written whole
        self.address = json.loads(address_file.read_text())["address"]
        for size in self.sizes:
            self.add_job(size)

    def add_job(self, size: int) -> str:
        """Start a process of ``size`` workers; its name, which its workers' names begin with."""
        name = f"job{self.started}"
        self.started += 1
        command = [sys.executable, str(HERE / "many_workers.py"), "--serve", self.address]
        command += ["--here", str(size), "--threads", str(self.threads), "--name", name]
        with open(self.folder / f"{name}.log", "w") as log:
            process = subprocess.Popen(command, cwd=HERE, stdout=log, stderr=log)
        self.jobs.append((process, size))
        return name

    def kill_job(self, index: int) -> tuple[int, int, float]:
        """SIGKILL the ``index``-th job's process (a batch job ending): (its pid, its workers, when)."""
        process, size = self.jobs[index]
        process.send_signal(signal.SIGKILL)
        when = time.time()
        process.wait()
        return process.pid, size, when

    def scheduler_cpu(self) -> float:
        import psutil

        times = psutil.Process(self.scheduler.pid).cpu_times()
        return times.user + times.system

    def close(self) -> None:
        for process in [p for p, _ in self.jobs] + ([self.scheduler] if self.scheduler else []):
            if process.poll() is None:
                process.kill()
                process.wait(timeout=60)


@contextlib.contextmanager
def cluster_running(folder: Path, workers: int, processes: int, threads: int):
    cluster = Cluster(folder, workers, processes, threads)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


def counters(dask_scheduler) -> dict:
    """Run on the scheduler: transitions so far, messages sent on the batched streams of the workers and clients
    connected now, and the slots connected now."""
    streams = [*dask_scheduler.stream_comms.values(), *dask_scheduler.client_comms.values()]
    return {
        "transitions": dask_scheduler.transition_counter,
        "sent": sum(stream.message_count for stream in streams),
        "threads": dask_scheduler.total_nthreads,
        "workers": len(dask_scheduler.workers),
    }


def settings(dask_scheduler) -> str:
    """Run on the scheduler: the settings it runs with that qcmb_dask cares about."""
    intervals = {stream.interval for stream in dask_scheduler.stream_comms.values()}
    return (
        f"worker-saturation {dask_scheduler.WORKER_SATURATION}, allowed-failures {dask_scheduler.allowed_failures}, "
        f"send interval to workers {', '.join(f'{1e3 * i:g} ms' for i in sorted(intervals))}, "
        f"plugins {', '.join(sorted(dask_scheduler.plugins))}"
    )


def workers_named(dask_scheduler, job: str) -> int:
    """Run on the scheduler: the workers connected now of the process of workers named ``job``."""
    return sum(1 for ws in dask_scheduler.workers.values() if str(ws.name).startswith(f"{job}-"))


# -- the workload ------------------------------------------------------------------------------------------------


def workload(slots: int, per_slot: float, median_s: float, waters: int | None = None):
    """(input, calculations, speed-up, model seconds in all): the smallest water cluster with at least ``per_slot``
    calculations per slot to 3-body nocp, and the speed-up that makes the median fragment ``median_s``."""
    import qcmb_dask

    if waters is None:
        waters = 3
        while waters + math.comb(waters, 2) + math.comb(waters, 3) < per_slot * slots:
            waters += 1
    data = mbe_input(waters, 3, "nocp", method=METHOD, basis=BASIS, program="sleeping")
    plan = qcmb_dask.plan(data, harnesses=[SleepingHarness()], cache=False)
    model = [task.model_cost for task in plan]
    return data, waters, len(plan), speedup_for(model, median_s), sum(model)


def speedup_for(model: list[float], median_s: float) -> float:
    """The speed-up that makes the median sleep ``median_s`` in expectation: sleeps are model x noise / speed-up,
    the noise lognormal of median 1, so the share of sleeps under ``median_s`` is the mean over the calculations of
    Phi(ln(median_s x speed-up / model) / sigma); bisected (in log) until it is one half."""
    phi = statistics.NormalDist().cdf

    def below(speedup: float) -> float:
        return sum(phi(math.log(median_s * speedup / m) / SIGMA) for m in model) / len(model)

    low, high = math.log(1e-6), math.log(1e9)
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if below(math.exp(middle)) < 0.5 else (low, middle)
    return math.exp((low + high) / 2)


# -- one run -----------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    mode: str
    calculations: int
    makespan: float
    first_start: float  # seconds from the call to the first fragment's start
    last_end: float  # seconds from the call to the last fragment's end
    replay_span: float
    work: float  # the fragments' sleep seconds, each calculation once
    sleeps: list[float]
    scheduler_cpu: float
    client_cpu: float
    transitions: int
    sent: int
    from_store: int
    killed_attempts: int = 0
    killed_seconds: float = 0.0
    twice: int = 0
    kills: list[tuple[float, int, float]] = field(default_factory=list)  # (when, workers, seconds to reconnect)


def attempts(log: Path) -> tuple[dict[str, list[tuple[float, float, float]]], list[tuple[str, int, float]]]:
    """From the program's lines: calculation -> its completed attempts (start, end, planned sleep), in order of
    start; and the attempts that never ended (calculation, pid, start)."""
    started: dict[str, tuple[str, int, float, float]] = {}
    ended: dict[str, float] = {}
    for line in log.read_text().splitlines():
        event, ident, attempt, pid, _host, when, planned = line.split()
        if event == "start":
            started[attempt] = (ident, int(pid), float(when), float(planned))
        else:
            ended[attempt] = float(when)
    done: dict[str, list[tuple[float, float, float]]] = {}
    unfinished = []
    for attempt, (ident, pid, start, planned) in sorted(started.items(), key=lambda item: item[1][2]):
        if attempt in ended:
            done.setdefault(ident, []).append((start, ended[attempt], planned))
        else:
            unfinished.append((ident, pid, start))
    return done, unfinished


def replay(runs: list[tuple[float, float]], slots: int) -> float:
    """The span of these (start, duration) fragments given to ``slots`` slots in the order they started, each the
    moment a slot is free: the run without the time between fragments."""
    first = min(start for start, _ in runs)
    free = [first] * slots
    for _, duration in sorted(runs):
        heapq.heappush(free, heapq.heappop(free) + duration)
    return max(free) - first


def run_once(mode: str, client, cluster: Cluster, data, n: int, speedup: float, expected: float, args) -> Outcome:
    import qcmb_dask

    folder = cluster.folder / mode
    folder.mkdir()
    log = folder / "attempts.log"
    harness = SleepingHarness(extras={"log": str(log), "sigma": SIGMA, "speedup": speedup})
    kills: list[tuple[int, int, float, float]] = []  # (pid, workers, when, seconds until the replacement connected)
    finished = threading.Event()

    def churn(began: float) -> None:
        from distributed import Client

        with Client(cluster.address, timeout=60) as monitor:
            for k in range(args.kills):
                if finished.wait(max(0.0, began + expected * (k + 1) / (args.kills + 1) - time.time())):
                    return
                pid, size, when = cluster.kill_job(k % len(cluster.sizes))
                job = cluster.add_job(size)  # the replacement job, started at once
                while monitor.run_on_scheduler(workers_named, job=job) < size and time.time() < when + 300:
                    time.sleep(0.2)
                kills.append((pid, size, when, time.time() - when))

    before = client.run_on_scheduler(counters)
    cpu, here = cluster.scheduler_cpu(), time.process_time()
    began = time.time()
    killer = threading.Thread(target=churn, args=(began,), daemon=True) if mode == "churn" else None
    if killer:
        killer.start()
    result = qcmb_dask.compute(data, client, harnesses=[harness], cache=str(folder / "store"), progress=False)
    ended = time.time()
    cpu, here = cluster.scheduler_cpu() - cpu, time.process_time() - here
    after = client.run_on_scheduler(counters)
    finished.set()
    if killer:
        killer.join()

    extras = result.extras["qcmb_dask"]
    assert result.success and result.return_result == 0.0, result.return_result
    done, unfinished = attempts(log)
    assert len(done) == n, f"{len(done)} of {n} calculations have a completed attempt"
    firsts = [tries[0] for tries in done.values()]
    killed_at = {pid: when for pid, _, when, _ in kills}
    lost = [killed_at.get(pid, ended) - start for _, pid, start in unfinished]
    return Outcome(
        mode=mode,
        calculations=n,
        makespan=ended - began,
        first_start=min(start for start, _, _ in firsts) - began,
        last_end=max(end for tries in done.values() for _, end, _ in tries) - began,
        replay_span=replay([(start, end - start) for start, end, _ in firsts], cluster.slots),
        work=sum(planned for _, _, planned in firsts),
        sleeps=[planned for _, _, planned in firsts],
        scheduler_cpu=cpu,
        client_cpu=here,
        transitions=after["transitions"] - before["transitions"],
        sent=after["sent"] - before["sent"],
        from_store=int(extras.get("from_store", 0)),
        killed_attempts=len(unfinished),
        killed_seconds=sum(lost),
        twice=sum(len(tries) - 1 for tries in done.values()),
        kills=[(when - began, size, back) for _, size, when, back in kills],
    )


def report(o: Outcome, slots: int, idle_rate: float) -> None:
    n = o.calculations
    efficiency = 100 * o.work / (slots * o.makespan)
    span = o.last_end - o.first_start
    replayed = o.first_start + o.replay_span + (o.makespan - o.last_end)
    print(
        f"{o.mode}: makespan {o.makespan:.1f} s, simulated parallel efficiency {efficiency:.1f} % "
        f"({o.work:,.0f} s of sleep / ({slots} slots x {o.makespan:.1f} s); goal >= 95 %)"
    )
    print(
        f"{o.mode}: first fragment started {o.first_start:.1f} s into the call, last ended {o.last_end:.1f} s; "
        f"span {span:.1f} s; the same fragments in the same order with no time between them: "
        f"{o.replay_span:.1f} s (efficiency {100 * o.work / (slots * replayed):.1f} %): "
        f"{slots * (span - o.replay_span) / n:.3f} s between fragments per calculation"
    )
    net = o.scheduler_cpu - idle_rate * o.makespan
    print(
        f"{o.mode}: scheduler CPU {o.scheduler_cpu:.1f} s ({100 * o.scheduler_cpu / o.makespan:.1f} % of a core), "
        f"{1e3 * o.scheduler_cpu / n:.2f} ms per calculation ({1e3 * net / n:.2f} ms net of idle); "
        f"{n / o.makespan:.1f} calculations/s"
    )
    print(
        f"{o.mode}: transitions {o.transitions:,} ({o.transitions / o.makespan:.0f}/s, {o.transitions / n:.1f} per "
        f"calculation); messages sent to workers and clients {o.sent:,} ({o.sent / o.makespan:.0f}/s); "
        f"client CPU {o.client_cpu:.1f} s ({1e3 * o.client_cpu / n:.2f} ms per calculation); this machine's load "
        f"average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    if o.mode == "churn":
        killed = sum(size for _, size, _ in o.kills)
        when = ", ".join(f"{w:.0f} s ({size} workers, replaced in {back:.1f} s)" for w, size, back in o.kills)
        print(
            f"{o.mode}: {len(o.kills)} jobs killed, {killed} workers, at {when or 'never (the run ended first)'}; "
            f"attempts killed mid-sleep {o.killed_attempts} ({o.killed_seconds:.0f} s of sleep lost, "
            f"{100 * o.killed_seconds / o.work:.2f} % of the work); computed twice {o.twice}; "
            f"read back from the store {o.from_store}"
        )
    sys.stdout.flush()


def describe(sleeps: list[float]) -> str:
    ordered = sorted(sleeps)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return (
        f"median {statistics.median(ordered):.1f} s, 10 % {at(0.1):.1f} s, 90 % {at(0.9):.1f} s, "
        f"min {ordered[0]:.2f} s, max {ordered[-1]:.1f} s, {sum(ordered):,.0f} s in all"
    )


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--workers", type=int, default=None, help="Dask workers (default 256; --quick: 16)")
    p.add_argument("--processes", type=int, default=None, help="processes they run in (default 16; --quick: 4)")
    p.add_argument("--threads", type=int, default=1, help="threads (slots) per worker")
    p.add_argument("--median", type=float, default=None, help="median fragment seconds (default 10; --quick: 1)")
    p.add_argument("--per-slot", type=float, default=None, help="calculations per slot, at least (16; --quick: 4)")
    p.add_argument("--waters", type=int, default=None, help="the water cluster's size (default: from --per-slot)")
    p.add_argument("--kills", type=int, default=2, help="jobs killed during the churn run")
    p.add_argument("--modes", default="steady,churn", help="which runs, in this order")
    p.add_argument("--idle", type=float, default=None, help="seconds the idle scheduler is measured (15; --quick: 3)")
    p.add_argument("--serve", default=None, help=argparse.SUPPRESS)  # a process of workers, for this scheduler
    p.add_argument("--here", type=int, default=1, help=argparse.SUPPRESS)  # its workers
    p.add_argument("--name", default="job", help=argparse.SUPPRESS)  # its name (its workers' names begin with it)
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.here, args.threads, args.name)
        return
    quick = args.quick
    workers = args.workers or (16 if quick else 256)
    processes = args.processes or (4 if quick else 16)
    median_s = args.median or (1.0 if quick else 10.0)
    per_slot = args.per_slot or (4 if quick else 16)
    idle_s = args.idle if args.idle is not None else (3.0 if quick else 15.0)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]

    import dask
    from distributed import Client

    dask.config.set({"qcmb_dask.security": "none"})
    slots = workers * args.threads
    data, waters, n, speedup, model = workload(slots, per_slot, median_s, args.waters)
    expected = model / speedup * math.exp(SIGMA**2 / 2) / slots
    with tempfile.TemporaryDirectory(prefix="qcmb-many-workers-") as scratch:
        started = time.time()
        with cluster_running(Path(scratch), workers, processes, args.threads) as cluster:
            sizes = sorted(set(cluster.sizes))
            print(
                f"cluster: {workers} workers x {args.threads} thread(s) = {slots} slots, in {len(cluster.sizes)} "
                f"processes of {'/'.join(map(str, sizes))} workers; a scheduler process of its own (pid "
                f"{cluster.scheduler.pid}, {cluster.address}); this machine: {os.cpu_count()} cores"
            )
            print(
                f"workload: (H2O){waters} 3-body nocp {METHOD.upper()}/{BASIS}, {n} calculations "
                f"({n / slots:.1f} per slot), sleeps = cost model / {speedup:.1f} x lognormal(sigma {SIGMA}); "
                f"expected span {expected:.0f} s"
            )
            sys.stdout.flush()
            with Client(cluster.address, timeout=60) as client:
                client.wait_for_workers(workers, timeout=600)
                print(f"workers connected {time.time() - started:.1f} s after the scheduler was started")
                warm_up(client, Path(scratch) / "warm-up")
                print(f"scheduler: {client.run_on_scheduler(settings)}")
                cpu = cluster.scheduler_cpu()
                time.sleep(idle_s)
                idle_rate = (cluster.scheduler_cpu() - cpu) / idle_s
                print(
                    f"scheduler idle with {workers} workers connected: {100 * idle_rate:.2f} % of a core "
                    f"(heartbeats; measured over {idle_s:.0f} s)"
                )
                sys.stdout.flush()
                for i, mode in enumerate(modes):
                    outcome = run_once(mode, client, cluster, data, n, speedup, expected, args)
                    if i == 0:
                        print(f"sleeps: {describe(outcome.sleeps)}")
                    report(outcome, slots, idle_rate)


def warm_up(client, store: Path) -> None:
    """A 7-calculation run of 50 ms fragments: this process's imports and the run's set-up on the workers."""
    import qcmb_dask

    data, _, _, speedup, _ = workload(1, 0, 0.05, waters=3)
    harness = SleepingHarness(extras={"sigma": SIGMA, "speedup": speedup})
    qcmb_dask.compute(data, client, harnesses=[harness], cache=str(store), progress=False)


if __name__ == "__main__":
    main()
