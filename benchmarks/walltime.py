"""Work thrown away when batch jobs reach their walltime: today's retirement against walltime-aware workers.

A 3-body nocp expansion of a water cluster, MP2/aug-cc-pVTZ, on the SLURM of this machine (`bash .ci/start-slurm`),
through a program that computes nothing: each calculation sleeps the cost model's estimate of it times a
deterministic noise (lognormal, sigma 0.25, drawn from the fragment's geometry), divided by a speed-up
(``sleeping_program.py``). At the site's scale (speed-up 1) the dimers take 30-70 s and the trimers 120-390 s; the
speed-up brings them to seconds here, and the jobs' walltime (a whole minute: SLURM's resolution) to a few
fragments. The store's cost history is seeded as after one earlier run (the ratio of the program's seconds to the
model's, ``1 / speed-up``), so the estimates on the fragment jobs are calibrated.

Two modes, the Dask config key ``qcmb_dask.batch.walltime-aware``:
- before (false): every worker gets dask's ``--lifetime`` (walltime minus a margin and a stagger) and retires
  then, killing the fragment it runs, which runs again elsewhere;
- new (true): a worker knows its job's deadline, starts only fragments whose estimate fits before it, and
  leaves after its current fragment; its replacement job is submitted before it leaves.
Where this qcmb_dask has no such key, only the before mode is measured.

How waste is counted: the program appends a line to a log when an attempt starts and when it ends, and touches a
heartbeat file every 0.5 s while it sleeps. After the run, each fragment's first completed attempt is computed
core-seconds (one core each); an attempt without an end was thrown away, for (its last heartbeat - its start);
a second completed attempt of a fragment is thrown away whole. "% wasted" is thrown away / (computed + thrown
away). Retired jobs: jobs that left the queue while the run went on (squeue, polled every 0.5 s); the jobs'
core-seconds are the time squeue showed them RUNNING.

    python benchmarks/walltime.py           # (H2O)8: 92 calculations, 3 jobs of 1 core, walltime 1 min
    python benchmarks/walltime.py --quick   # (H2O)4, 2 jobs: checks the script runs (skips without SLURM)
"""

from __future__ import annotations

import collections
import contextlib
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import dask
from common import parser
from sleeping_program import SleepingHarness
from systems import mbe_input

import qcmb_dask
from qcmb_dask.planning import cost_history

HERE = Path(__file__).resolve().parent
MODE_KEY = "qcmb_dask.batch.walltime-aware"
METHOD, BASIS = "mp2", "aug-cc-pvtz"
#: the site's seconds per second of the cost model (the dimers take 30-70 s, the trimers 120-390 s)
SCALE = 1.0
SIGMA = 0.25


def slurm_answers() -> bool:
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        return False
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(s in out.stdout for s in ("idle", "mixed", "allocated"))


def queue(job_name: str) -> list[tuple[str, str]]:
    out = subprocess.run(["squeue", "-h", "-n", job_name, "-o", "%i %T"], capture_output=True, text=True)
    return [tuple(line.split()) for line in out.stdout.splitlines() if line.strip()]


class QueueWatcher(threading.Thread):
    """Polls squeue: when each job was first and last seen RUNNING, when it left, the most jobs at once."""

    def __init__(self, job_name: str, every: float = 0.5):
        super().__init__(daemon=True)
        self.job_name, self.every = job_name, every
        self.running: dict[str, list[float]] = {}  # job id -> [first, last] seen RUNNING
        self.left: dict[str, float] = {}  # job id -> when it was no longer listed
        self.listed: set[str] = set()
        self.most = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            now, jobs = time.time(), queue(self.job_name)
            ids = {job_id for job_id, _ in jobs}
            self.most = max(self.most, len(ids))
            for job_id, state in jobs:
                if state == "RUNNING":
                    self.running.setdefault(job_id, [now, now])[1] = now
            for job_id in self.listed - ids:
                self.left.setdefault(job_id, now)
            self.listed |= ids
            time.sleep(self.every)


class KeeperLines(logging.Handler):
    """The keeper's lines on the ``qcmb_dask`` logger (at INFO with progress=False): jobs that ended under their
    workers, and jobs whose workers leave before their walltime (the new mode)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.ended: list[str] = []
        self.leaving: list[str] = []

    def emit(self, record):
        message = record.getMessage()
        if "leaves before its walltime" in message:
            self.leaving.append(message)
        elif message.startswith("qcmb_dask: job ") and (") ended" in message or "was preempted" in message):
            self.ended.append(message)

    @contextlib.contextmanager
    def listening(self):
        logger = logging.getLogger("qcmb_dask")
        level = logger.level
        logger.addHandler(self)
        logger.setLevel(min(level or logging.WARNING, logging.INFO))
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.setLevel(level)


@dataclass
class Outcome:
    mode: str
    fragments: int
    wall_s: float
    jobs: int
    retired: int
    most_jobs: int
    keeper_ended: int
    keeper_leaving: int
    computed_s: float
    thrown_s: float
    killed: int
    repeated: int
    job_core_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def wasted_pct(self) -> float:
        return 100 * self.thrown_s / max(self.computed_s + self.thrown_s, 1e-9)


def attempts(log: Path, heartbeats: Path) -> tuple[dict[str, list[float]], list[float], int]:
    """(fragment -> durations of its completed attempts, seconds of each attempt that never ended, attempts)."""
    started: dict[str, tuple[str, float]] = {}
    ended: dict[str, float] = {}
    for line in log.read_text().splitlines():
        event, ident, attempt, _pid, _host, when, _planned = line.split()
        if event == "start":
            started[attempt] = (ident, float(when))
        else:
            ended[attempt] = float(when)
    done: dict[str, list[float]] = collections.defaultdict(list)
    unfinished = []
    for attempt, (ident, start) in started.items():
        if attempt in ended:
            done[ident].append(ended[attempt] - start)
        else:
            beat = heartbeats / attempt
            last = beat.stat().st_mtime if beat.exists() else start
            unfinished.append(max(0.0, last - start))
    return done, unfinished, len(started)


def seed_history(store: Path, speedup: float) -> None:
    """The store's cost history as one earlier run of this program leaves it: this machine's seconds over the
    model's, SCALE / speed-up, for every calculation of the kind."""
    kind = "|".join(["sleeping", METHOD, BASIS, "energy"])
    cost_history.record(store, [(kind, SCALE / speedup)] * 32)


def run_mode(mode: str, aware: bool | None, args, data, n: int) -> Outcome:
    scratch = Path(tempfile.mkdtemp(prefix=f"qcmb-walltime-{mode}-"))
    log, heartbeats, store = scratch / "attempts.log", scratch / "heartbeats", scratch / "store"
    heartbeats.mkdir()
    store.mkdir()
    seed_history(store, args.speedup)
    job_name = f"qcmb-wall-{uuid.uuid4().hex[:6]}"
    options = {
        "name": job_name,
        "cores": 1,
        "memory": "1GiB",
        "walltime": args.walltime,
        "log_directory": str(scratch / "logs"),
        "interface": "lo",
        "scheduler_options": {"interface": "lo", "dashboard_address": ":0"},
        "job_script_prologue": [f"cd {HERE}"],  # the workers import sleeping_program
    }
    harness = SleepingHarness(
        extras={
            "log": str(log),
            "heartbeats": str(heartbeats),
            "scale": SCALE,
            "sigma": SIGMA,
            "speedup": args.speedup,
        }
    )
    watcher = QueueWatcher(job_name)
    watcher.start()
    config = {} if aware is None else {MODE_KEY: aware}
    print(f"-- {mode}: {n} calculations, jobs={args.jobs} of 1 core, walltime {args.walltime}; files in {scratch}")
    sys.stdout.flush()
    try:
        with dask.config.set(config), KeeperLines().listening() as keeper:
            began = time.time()
            result = qcmb_dask.compute(
                data,
                "slurm",
                jobs=args.jobs,
                harnesses=[harness],
                cache=store,
                cluster_options=options,
                progress=False,
            )
            wall = time.time() - began
    finally:
        run_ended = time.time()
        time.sleep(2 * watcher.every)
        watcher.stop.set()
        watcher.join()
    (scratch / "keeper.log").write_text("".join(f"{line}\n" for line in keeper.ended + keeper.leaving))
    done, unfinished, tries = attempts(log, heartbeats)

    # The answer: the program's energies are all zero, and every calculation is in the result exactly once.
    extras = result.extras["qcmb_dask"]
    assert result.success and result.return_result == 0.0, result.return_result
    assert extras["computed"] + extras["from_store"] == n, (extras["computed"], extras["from_store"], n)
    assert len(done) == n, f"{len(done)} of {n} calculations have a completed attempt"

    computed = sum(durations[0] for durations in done.values())
    repeated = [d for durations in done.values() for d in durations[1:]]
    retired = [job_id for job_id, when in watcher.left.items() if when < run_ended]
    notes = []
    if extras["from_store"]:
        notes.append(f"{extras['from_store']} calculation(s) read back from the store by a rerun")
    return Outcome(
        mode=mode,
        fragments=n,
        wall_s=wall,
        jobs=len(watcher.listed),
        retired=len(retired),
        most_jobs=watcher.most,
        keeper_ended=len(keeper.ended),
        keeper_leaving=len(keeper.leaving),
        computed_s=computed,
        thrown_s=sum(unfinished) + sum(repeated),
        killed=len(unfinished),
        repeated=len(repeated),
        job_core_s=sum(last - first for first, last in watcher.running.values()),
        notes=notes + [f"{tries} attempts in all"],
    )


def report(o: Outcome) -> None:
    per_job = o.thrown_s / o.retired if o.retired else 0.0
    print(f"  {o.mode}:")
    print(f"    fragments                      {o.fragments:8d}")
    print(f"    jobs used                      {o.jobs:8d}")
    print(
        f"    jobs retired during the run    {o.retired:8d}  (the keeper's lines: {o.keeper_ended} ended under their "
        f"workers, {o.keeper_leaving} left before their walltime)"
    )
    print(f"    most jobs in the queue at once {o.most_jobs:8d}")
    print(f"    core-seconds computed          {o.computed_s:8.1f}")
    print(f"    core-seconds thrown away       {o.thrown_s:8.1f}  ({o.killed} attempts killed, {o.repeated} repeated)")
    print(f"    thrown away per retired job    {per_job:8.1f}")
    print(f"    wasted                         {o.wasted_pct:8.2f} %")
    used = 100 * o.computed_s / max(o.job_core_s, 1e-9)
    print(f"    jobs' core-seconds (RUNNING)   {o.job_core_s:8.1f}  (computed fragments: {used:.0f} % of them)")
    print(f"    wall time                      {o.wall_s:8.1f} s")
    for note in o.notes:
        print(f"    ({note})")
    sys.stdout.flush()


def wait_for_an_empty_queue(job_name_prefix: str = "qcmb-wall-", within: float = 60) -> None:
    deadline = time.time() + within
    while time.time() < deadline:
        out = subprocess.run(["squeue", "-h", "-o", "%j"], capture_output=True, text=True).stdout
        if not any(name.startswith(job_name_prefix) for name in out.split()):
            return
        time.sleep(1)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--waters", type=int, default=None, help="waters in the cluster (default 8; --quick: 4)")
    p.add_argument("--jobs", type=int, default=None, help="jobs of 1 core kept at once (default 3; --quick: 2)")
    p.add_argument("--walltime", default="00:01:00", help="each job's walltime (SLURM: whole minutes)")
    p.add_argument("--speedup", type=float, default=20.0, help="the site's fragment seconds per second here")
    p.add_argument("--modes", default="before,new", help="which modes to measure, in this order")
    args = p.parse_args()
    if not slurm_answers():
        print("walltime.py: skipped, no SLURM answers here (sbatch and sinfo; start one: bash .ci/start-slurm)")
        return
    args.waters = args.waters or (4 if args.quick else 8)
    args.jobs = args.jobs or (2 if args.quick else 3)
    data = mbe_input(args.waters, 3, "nocp", method=METHOD, basis=BASIS, program="sleeping")
    n = len(qcmb_dask.plan(data, harnesses=[SleepingHarness()], cache=False))
    has_key = dask.config.get(MODE_KEY, default=None) is not None
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not has_key and "new" in modes:
        print(f"{MODE_KEY} is not a setting of this qcmb_dask: only today's behaviour (before) is measured")
        modes = ["before"]
    print(
        f"(H2O){args.waters} 3-body nocp {METHOD.upper()}/{BASIS} through a sleeping program: {n} calculations, "
        f"model seconds x {SCALE} x lognormal(sigma {SIGMA}) / {args.speedup:g}; SLURM jobs of 1 core, "
        f"walltime {args.walltime}"
    )
    outcomes = {}
    for mode in modes:
        aware = {"before": False, "new": True}[mode] if has_key else None
        wait_for_an_empty_queue()
        outcomes[mode] = run_mode(mode, aware, args, data, n)
        report(outcomes[mode])
    before = outcomes.get("before")
    new = outcomes.get("new")
    before_text = f"{before.wasted_pct:.1f}" if before else "n/a"
    new_text = f"{new.wasted_pct:.1f}" if new else "n/a"
    print(f"wasted: {new_text} % of core-seconds (before: {before_text} %)")


if __name__ == "__main__":
    main()
