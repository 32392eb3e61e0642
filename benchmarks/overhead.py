"""Scheduler overhead per fragment: 5000 fragments of a no-op QCEngine program on a warm LocalCluster.

The no-op program returns zero at once, so the run is all overhead. From Dask's task stream, per fragment:
- wall time per fragment: makespan / fragments, what a user pays per fragment beyond its QC;
- scheduler overhead: (makespan - time workers spent computing / workers) / fragments, the wall time
  that no worker spends computing: what Dask and the client add around each task (planning, graph
  build, submission, scheduling, transfers);
- fragment function: time inside each fragment task (building the fragment molecule from the
  parent, QCEngine's input/output handling), which a real QC program dwarfs;
- analysis: the level and result nodes (QCManyBody's analyze), per fragment.

Each repetition runs three times: without the result store, with an empty store (every fragment
written: checksum, fsync, rename) and again with that store (every fragment read back), so the
store's cost per fragment is measured in the same run. Then the runs without a store are repeated
on two clusters that each change one of qcmb_dask's scheduler settings back to Dask's: worker-saturation
1.1 instead of 1.0, and a 5 ms batching interval for the scheduler's messages to workers instead of 1 ms; and
on a third without TLS (``qcmb_dask.security: none``), for what TLS costs per fragment.

    python benchmarks/overhead.py           # (H2O)100 2-body nocp: 5050 fragments, 3 repetitions
    python benchmarks/overhead.py --quick   # (H2O)30 2-body nocp: 465 fragments, for CI
"""

from __future__ import annotations

import tempfile
import time
from typing import Any, ClassVar

import dask
from common import median, parser, warm_client
from makespan import release
from qcelemental.models.v2 import AtomicResult, Provenance
from sleeping_program import InstantHarness
from systems import mbe_input

import qcmb_dask
from qcmb_dask.clusters.resources import machine_cores
from qcmb_dask.execution.run import install_harnesses
from qcmb_dask.graph import build
from qcmb_dask.worker.fragment import RunPolicy


class NoOpHarness(InstantHarness):
    """Returns energy 0 (and zero derivatives) without computing anything."""

    _defaults: ClassVar[dict[str, Any]] = {**InstantHarness._defaults, "name": "noop"}

    def compute(self, input_data, config):
        return AtomicResult(
            input_data=input_data,
            molecule=input_data.molecule,
            return_result=0.0,
            success=True,
            properties={"return_energy": 0.0},
            provenance=Provenance(creator="noop", version="0", routine="noop"),
        )


def scheduler_batches(dask_scheduler) -> int:
    """Batches the scheduler has sent to workers so far (one message or several each)."""
    return sum(stream.batch_count for stream in dask_scheduler.stream_comms.values())


def run_once(client, data, store=None):
    """Makespan of one compute (plan + graph + run), compute seconds per task group, and this process's CPU
    seconds (the client's and, on a LocalCluster, the scheduler's) and the scheduler's batches to workers."""
    from dask.utils import key_split
    from distributed import get_task_stream

    batches = client.run_on_scheduler(scheduler_batches)
    with get_task_stream(client) as stream:
        start, cpu = time.perf_counter(), time.process_time()
        plan = qcmb_dask.plan(data, harnesses=[NoOpHarness()], cache=False)
        graph = build(plan, task_config={"ncores": 1}, policy=RunPolicy(store=store))
        future = client.compute(graph.result)
        future.result()
        makespan, cpu = time.perf_counter() - start, time.process_time() - cpu
    here = {"cpu": cpu, "batches": client.run_on_scheduler(scheduler_batches) - batches}
    key = future.key
    del future
    release(client, [key])
    busy = {"fragment": 0.0, "analysis": 0.0, "other": 0.0}
    for record in stream.data:
        group = key_split(record["key"])
        kind = "fragment" if group.startswith("fragment-") else "analysis" if group.startswith("mbe-") else "other"
        busy[kind] += sum(s["stop"] - s["start"] for s in record["startstops"] if s["action"] == "compute")
    return len(plan), makespan, busy, here


def main() -> None:
    args = parser(__doc__).parse_args()
    nwaters, repeat = (30, args.repeat or 1) if args.quick else (100, args.repeat or 3)
    data = mbe_input(nwaters, 2, "nocp", program="noop")
    workers = machine_cores()
    default_saturation = dask.config.get("qcmb_dask.worker-saturation")
    default_interval = dask.config.get("qcmb_dask.scheduler-send-interval")
    runs, writes, reads, dask_default = [], [], [], []
    with tempfile.TemporaryDirectory() as scratch:
        with warm_client(workers) as client:
            install_harnesses(client, [NoOpHarness()])
            run_once(client, mbe_input(4, 2, "nocp", program="noop"))  # warm-up
            for i in range(repeat):
                runs.append(run_once(client, data))
                writes.append(run_once(client, data, store=f"{scratch}/store-{i}"))
                reads.append(run_once(client, data, store=f"{scratch}/store-{i}"))
        # Dask's defaults, one at a time: each worker also holds the next fragment (saving a round trip per
        # fragment); the scheduler batches its messages to a worker over 5 ms.
        plain_tcp = {"qcmb_dask.security": "none"}
        for setting in ({"qcmb_dask.worker-saturation": 1.1}, {"qcmb_dask.scheduler-send-interval": "5ms"}, plain_tcp):
            with dask.config.set(setting), warm_client(workers) as client:
                install_harnesses(client, [NoOpHarness()])
                run_once(client, mbe_input(4, 2, "nocp", program="noop"))
                dask_default.append([run_once(client, data) for _ in range(repeat)])
    n = runs[0][0]

    def per_fragment_ms(f, runs=runs):
        return median([1e3 * f(makespan, busy) / n for _, makespan, busy, _ in runs])

    def per_fragment(name, runs=runs, scale=1.0):
        return median([scale * here[name] / n for *_, here in runs])

    def overhead(makespan, busy):
        return makespan - sum(busy.values()) / workers

    print(f"{n} no-op fragments on {workers} workers, {repeat} repetitions (median):")
    print(f"  qcmb_dask's defaults: worker-saturation {default_saturation} (a worker holds only what it runs),")
    print(f"  scheduler-send-interval {default_interval}:")
    print(f"    makespan                           {median([r[1] for r in runs]):8.2f} s")
    print(f"    wall time per fragment             {per_fragment_ms(lambda m, b: m):8.2f} ms")
    print(f"    scheduler overhead per fragment    {per_fragment_ms(overhead):8.2f} ms  (goal <= 2 ms)")
    print(f"    fragment function per fragment     {per_fragment_ms(lambda m, b: b['fragment']):8.2f} ms")
    print(f"    analysis nodes, per fragment       {per_fragment_ms(lambda m, b: b['analysis']):8.2f} ms")
    print(f"    (fragment function and analysis: worker-seconds per fragment, {workers} workers share them)")
    print(f"    client + scheduler CPU per fragment {per_fragment('cpu', scale=1e3):7.2f} ms")
    print(f"    scheduler batches to workers, per fragment {per_fragment('batches'):4.2f}")
    for label, other in (
        ("worker-saturation 1.1 (Dask's default: a worker also holds the next fragment)", dask_default[0]),
        ("scheduler-send-interval 5ms (Dask's fixed batching of messages to a worker)", dask_default[1]),
        ("security none (plain TCP; the default is TLS with temporary credentials)", dask_default[2]),
    ):
        print(f"  {label}:")
        print(f"    wall time per fragment             {per_fragment_ms(lambda m, b: m, other):8.2f} ms")
        print(f"    scheduler overhead per fragment    {per_fragment_ms(overhead, other):8.2f} ms")
        print(f"    client + scheduler CPU per fragment {per_fragment('cpu', other, 1e3):7.2f} ms")
        print(f"    scheduler batches to workers, per fragment {per_fragment('batches', other):4.2f}")
    for name, store_runs in (("writing every result to an empty store", writes), ("reading every result back", reads)):
        print(f"  qcmb_dask's defaults, {name}:")
        wall = per_fragment_ms(lambda m, b: m, store_runs)
        function = per_fragment_ms(lambda m, b: b["fragment"], store_runs)
        print(f"    wall time per fragment             {wall:8.2f} ms")
        print(f"    fragment function per fragment     {function:8.2f} ms")


if __name__ == "__main__":
    main()
