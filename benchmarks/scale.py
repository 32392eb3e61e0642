"""A million calculations: what time and memory per calculation do as an expansion grows (issue 31).

Part 1, the expansion. Each size runs in a fresh process of its own (this script again, ``--one N``), which
starts a ``dask scheduler`` (with ``--preload qcmb_dask.clusters.preload`` and qcmb_dask's worker-saturation, as
qcmb_dask's own schedulers have) and one ``dask worker --nworkers 2 --nthreads 1 --memory-limit 0`` (no spilling
or pausing: the workers' peak is what the run needs) as processes of their own, plain TCP on loopback, and runs a
2-body nocp expansion of ``n`` waters on a 2.9 A grid with the no-op program of ``overhead.py`` (energy 0 at
once: the run is all overhead), C(n,2) + n >= N calculations (n = 141: 10,011; 447: 100,128; 1414: 1,000,405),
through the public API: ``qcmb_dask.compute(input, "tcp://...", harnesses=[NoOpHarness()], cache=False,
progress=False)``, after a warm-up run of 10 calculations on the same cluster (the workers' imports). Per size:
- plan: ``qcmb_dask.plan`` of the same input alone (compute plans it again, inside its own time);
- ms/calculation: wall time from the call to ``compute`` to its result, per calculation;
- client MiB: peak RSS of the process that calls ``compute`` (``ru_maxrss``), the plan included;
- scheduler MiB: peak RSS of the scheduler process (``client.run_on_scheduler``);
- worker MiB: the larger peak RSS of the two worker processes (``client.run``);
- CPU per calculation of the client, the scheduler and the workers (both together): who is busy.
Then the ratio of the largest size's ms/calculation to the smallest's (goal: within 20 %) and the memory
goals at 10^6 (client <= 2 GiB, scheduler <= 4 GiB). ``qcmb_dask.max-calculations`` is raised (``dask.config.set``)
where a size needs it.

Part 2, the result store's existence checks. One temporary store is filled to 10^4, then 10^5, then 10^6
entries (``<key[:2]>/<key>.energy.json``, as ``ResultStore.save`` lays them out: the first one through
``save``, the others as byte copies of it with the key changed, without ``save``'s fsync, so that a
million take a minute, not an hour), and at each count 2,000 random present and 2,000 absent keys are looked
up: ``ResultStore.has`` (what counting progress does) and ``ResultStore.load`` (what a fragment does before it
computes: read and checksum). Median microseconds per check, with the file system's caches warm (just written).
The store is deleted afterwards; it needs about 4 KiB of disk per entry (4 GiB at 10^6) in ``--store-dir``.

    python benchmarks/scale.py                                    # 10^4, 10^5 and 10^6 calculations; store 10^4..10^6
    python benchmarks/scale.py --sizes 10000,100000 --no-store    # the expansion part only, at two sizes
    python benchmarks/scale.py --store                            # the store part only
    python benchmarks/scale.py --quick                            # 300 and 1,035 calculations, store 10^3, 10^4: CI
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import median, parser

HERE = Path(__file__).resolve().parent
DEFAULT_SIZES = "10000,100000,1000000"
QUICK_SIZES = "300,1000"
STORE_SIZES = (10_000, 100_000, 1_000_000)
QUICK_STORE_SIZES = (1_000, 10_000)
#: goals of issue 31, at 10^6 calculations
GOALS = {"ratio": 1.2, "client MiB": 2048, "scheduler MiB": 4096}
WORKERS = 2
#: lookups per kind (present, absent) at each store size
LOOKUPS = 2000


def fragments_for(ncalculations: int) -> int:
    """The fewest fragments whose 2-body nocp expansion, C(n,2) + n = n(n+1)/2, has ``ncalculations`` or more."""
    n = max(2, math.isqrt(2 * ncalculations))
    while n * (n + 1) // 2 < ncalculations:
        n += 1
    while n > 2 and (n - 1) * n // 2 >= ncalculations:
        n -= 1
    return n


def peak_mib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident set of this process (Linux: ``ru_maxrss`` in KiB)."""
    return resource.getrusage(who).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------------------------------------------------------
# Part 1: one size, in a process of its own (--one N)


@contextlib.contextmanager
def scheduler_and_workers(folder: Path, saturation):
    """A ``dask scheduler`` and ``dask worker --nworkers 2 --nthreads 1`` on loopback, plain TCP, each in a process
    group of its own (ended by its id); their output goes to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    address_file = folder / "scheduler.json"
    env = {
        **os.environ,
        "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": str(saturation),
        # the workers unpickle overhead.NoOpHarness
        "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p),
    }
    scheduler = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0"]
    scheduler += ["--no-dashboard", "--scheduler-file", str(address_file), "--preload", "qcmb_dask.clusters.preload"]
    processes = []

    def start(command, name):
        log = open(folder / f"{name}.log", "wb")  # noqa: SIM115  closed with the process, below
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        processes.append((process, log))
        return process

    try:
        start(scheduler, "scheduler")
        deadline = time.time() + 120
        while not address_file.exists():
            if time.time() > deadline or processes[0][0].poll() is not None:
                raise RuntimeError(f"the scheduler did not start: {(folder / 'scheduler.log').read_text()[-2000:]}")
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written whole
        address = json.loads(address_file.read_text())["address"]
        worker = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--host", "127.0.0.1"]
        worker += ["--nthreads", "1", "--nworkers", str(WORKERS), "--no-dashboard"]
        # no memory limit: Dask neither spills results to disk nor pauses a worker, so its peak is what the run needs
        worker += ["--memory-limit", "0", "--local-directory", str(folder / "workers")]
        start(worker, "workers")
        yield address
    finally:
        for process, log in reversed(processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
            log.close()


def cluster_usage(address: str, wait_for_workers: bool = False) -> dict:
    """Peak RSS and CPU seconds of the scheduler and of each worker, through a short-lived client of their own."""
    from distributed import Client

    def usage():
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {"peak MiB": ru.ru_maxrss / 1024, "cpu": ru.ru_utime + ru.ru_stime}

    with Client(address, timeout="300s") as client:  # a scheduler releasing a million keys answers late
        if wait_for_workers:
            client.wait_for_workers(WORKERS, timeout=120)
        return {"scheduler": client.run_on_scheduler(usage), "workers": list(client.run(usage).values())}


def one_size(ncalculations: int, out: Path) -> None:
    """Run one size here (a fresh process) and write its figures to ``out`` as JSON."""
    import dask
    from overhead import NoOpHarness
    from systems import mbe_input

    import qcmb_dask

    nfragments = fragments_for(ncalculations)
    data = mbe_input(nfragments, 2, "nocp", program="noop")
    harnesses = [NoOpHarness()]
    with tempfile.TemporaryDirectory(prefix="qcmb-scale-") as scratch:
        qcmb_dask.plan(mbe_input(4, 2, "nocp", program="noop"), harnesses=harnesses, cache=False)  # loads the config
        wanted = nfragments * (nfragments + 1) // 2
        dask.config.set(
            {
                "qcmb_dask.security": "none",
                "qcmb_dask.max-calculations": max(wanted, dask.config.get("qcmb_dask.max-calculations")),
            }
        )
        with scheduler_and_workers(Path(scratch), dask.config.get("qcmb_dask.worker-saturation")) as address:
            cluster_usage(address, wait_for_workers=True)
            options = {"harnesses": harnesses, "cache": False, "progress": False}
            qcmb_dask.compute(mbe_input(4, 2, "nocp", program="noop"), address, **options)  # warm-up: imports
            start = time.perf_counter()
            plan = qcmb_dask.plan(data, harnesses=harnesses, cache=False)
            plan_s = time.perf_counter() - start
            n = len(plan)
            del plan
            before = cluster_usage(address)
            client_cpu = cpu_seconds()
            start = time.perf_counter()
            result = qcmb_dask.compute(data, address, **options)
            compute_s = time.perf_counter() - start
            client_cpu = cpu_seconds() - client_cpu
            after = cluster_usage(address)
            if result.return_result != 0.0:
                raise RuntimeError(f"the no-op expansion gave {result.return_result}, not 0")
            del result
    workers_cpu = sum(w["cpu"] for w in after["workers"]) - sum(w["cpu"] for w in before["workers"])
    figures = {
        "calculations": n,
        "fragments": nfragments,
        "plan s": plan_s,
        "compute s": compute_s,
        "ms/calculation": 1e3 * compute_s / n,
        "client MiB": peak_mib(),
        "scheduler MiB": after["scheduler"]["peak MiB"],
        "worker MiB": max(w["peak MiB"] for w in after["workers"]),
        "client cpu ms": 1e3 * client_cpu / n,
        "scheduler cpu ms": 1e3 * (after["scheduler"]["cpu"] - before["scheduler"]["cpu"]) / n,
        "workers cpu ms": 1e3 * workers_cpu / n,
    }
    out.write_text(json.dumps(figures))


def run_size(ncalculations: int) -> dict:
    """``--one N`` in a fresh process; its figures, or its output's tail and an error where it failed."""
    with tempfile.TemporaryDirectory(prefix="qcmb-scale-out-") as folder:
        out, log = Path(folder) / "figures.json", Path(folder) / "child.log"
        with open(log, "wb") as f:
            child = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--one", str(ncalculations), "--out", str(out)],
                stdout=f,
                stderr=subprocess.STDOUT,
                cwd=HERE,
            )
        if child.returncode != 0 or not out.exists():
            tail = log.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"the run of {ncalculations} calculations failed (exit {child.returncode}):\n{tail}")
        return json.loads(out.read_text())


def expansion_part(sizes: list[int]) -> None:
    import dask

    import qcmb_dask

    qcmb_dask.plan  # noqa: B018  loads qcmb_dask's config defaults
    saturation = dask.config.get("qcmb_dask.worker-saturation")
    print(
        "2-body nocp of n waters, no-op program, compute(cluster=<address>, cache=False), each size in a fresh "
        f"process; a scheduler and {WORKERS} single-threaded workers (processes of their own, "
        f"worker-saturation {saturation}):"
    )
    figures = []
    for size in sizes:
        f = run_size(size)
        figures.append(f)
        print(
            f"  {f['calculations']:>9,} calculations ({f['fragments']:>4} fragments): plan {f['plan s']:7.2f} s, "
            f"compute {f['compute s']:8.1f} s: {f['ms/calculation']:6.2f} ms/calculation, "
            f"client {f['client MiB']:6.0f} MiB, scheduler {f['scheduler MiB']:6.0f} MiB, "
            f"worker {f['worker MiB']:6.0f} MiB",
            flush=True,
        )
        print(
            f"  {'':>9}  CPU per calculation: client {f['client cpu ms']:.2f} ms, "
            f"scheduler {f['scheduler cpu ms']:.2f} ms, workers {f['workers cpu ms']:.2f} ms (both together)",
            flush=True,
        )
    if len(figures) > 1:
        small, large = figures[0], figures[-1]
        ratio = large["ms/calculation"] / small["ms/calculation"]
        print(
            f"  ms/calculation at {large['calculations']:,} / at {small['calculations']:,}: {ratio:.2f} "
            f"(goal <= {GOALS['ratio']:.2f})"
        )
    large = figures[-1]
    at = "" if large["calculations"] >= 10**6 else f" (the goals are for 10^6; largest here {large['calculations']:,})"
    print(
        f"  at {large['calculations']:,}: client {large['client MiB']:.0f} MiB (goal <= {GOALS['client MiB']}), "
        f"scheduler {large['scheduler MiB']:.0f} MiB (goal <= {GOALS['scheduler MiB']}){at}"
    )


# ---------------------------------------------------------------------------------------------------------------
# Part 2: the result store's existence checks


def store_part(sizes: tuple[int, ...], where: str | None) -> None:
    import hashlib

    from qcmb_dask import ResultStore

    payload = json.dumps({"schema_name": "qcschema_atomic_result", "success": True, "return_result": 0.0})
    rng = random.Random(31)

    def key(i: int, kind: str = "present") -> str:
        return hashlib.sha256(f"{kind}-{i}".encode()).hexdigest()

    print(f"the result store: {LOOKUPS} random present and {LOOKUPS} absent keys per size, median per check:")
    with tempfile.TemporaryDirectory(prefix="qcmb-scale-store-", dir=where) as folder:
        store = ResultStore(Path(folder) / "store")
        first = key(0)
        template = store.save(first, "energy", payload).read_bytes()  # what save writes, to copy with other keys
        filled, made = 1, {store.path(first, "energy").parent}
        for size in sizes:
            start = time.perf_counter()
            for i in range(filled, size):
                k = key(i)
                path = store.path(k, "energy")
                if path.parent not in made:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    made.add(path.parent)
                path.write_bytes(template.replace(first.encode(), k.encode()))
            fill_s, filled = time.perf_counter() - start, size
            probe = key(rng.randrange(1, size))
            if store.load(probe, "energy") != json.loads(payload):
                raise RuntimeError(f"a copied entry ({probe}) does not load: the store's layout changed")
            present = [key(rng.randrange(size)) for _ in range(LOOKUPS)]
            absent = [key(i, "absent") for i in rng.sample(range(10 * size), LOOKUPS)]
            row = {}
            for name, check in (("has", store.has), ("load", store.load)):
                for kind, keys in (("present", present), ("absent", absent)):
                    times = []
                    for k in keys:
                        t = time.perf_counter_ns()
                        found = check(k, "energy")
                        times.append(time.perf_counter_ns() - t)
                        if bool(found) != (kind == "present"):
                            raise RuntimeError(f"{name}({k}) said {found!r} for a key that is {kind}")
                    row[name, kind] = median(times) / 1e3
            print(
                f"  {size:>9,} entries (filled in {fill_s:6.1f} s): has {row['has', 'present']:6.1f} µs present, "
                f"{row['has', 'absent']:6.1f} µs absent; load {row['load', 'present']:6.1f} µs present, "
                f"{row['load', 'absent']:6.1f} µs absent",
                flush=True,
            )
        start = time.perf_counter()
        shutil.rmtree(store.root)
        print(f"  (the store deleted in {time.perf_counter() - start:.1f} s)")


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--sizes", default=None, help=f"calculations per run, comma-separated (default {DEFAULT_SIZES})")
    p.add_argument("--store", action="store_true", help="the result store's part only")
    p.add_argument("--no-store", action="store_true", help="the expansion part only")
    p.add_argument("--store-dir", default=None, help="where the temporary store goes (default: the system's temp)")
    p.add_argument("--one", type=int, default=None, help=argparse_hidden())
    p.add_argument("--out", default=None, help=argparse_hidden())
    args = p.parse_args()
    if args.one is not None:
        one_size(args.one, Path(args.out))
        return
    start = time.perf_counter()
    if not args.store:
        sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
        expansion_part([int(s.replace("_", "")) for s in sizes.split(",") if s.strip()])
    if not args.no_store:
        store_part(QUICK_STORE_SIZES if args.quick else STORE_SIZES, args.store_dir)
    print(f"({time.perf_counter() - start:.0f} s in all)")


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
