"""Real chemistry at size: (H2O)128 at HF/STO-3G through PySCF, end to end on this machine's cores.

Two runs of ``examples/water-128.json`` (the cluster of ``screening.py``'s ``cluster_input(128)``: waters on a
cubic grid 3.1 A apart, randomly rotated, seeded), each on a fresh LocalCluster of single-thread workers (as the
embedded cluster starts them; one per core) and a fresh, empty result store, timed from ``compute`` to its answer:

a. the 3-body nocp energy, distance-screened with the cutoffs the README suggests (2-body 12 A, 3-body 8 A):
   128 / 5,492 / 26,527 = 32,147 of the full expansion's 349,632 calculations;
b. the 2-body nocp gradient, unscreened: 128 + 8,128 = 8,256 calculations.

Per run:
- calculations per level (planned), wall time, calculations per second;
- peak RSS of this client process (on a LocalCluster, the scheduler's too) and of each worker, read at the end:
  ``ru_maxrss`` and Linux's ``VmHWM``. The client's is the whole process's peak so far (run b's includes run
  a's); each run's workers are new, but their ``ru_maxrss`` includes the client's RSS when they were started
  (a fork of it, before Python was exec'd): ``VmHWM`` is theirs alone. RSS is also sampled every few seconds
  while the run goes (at 0 / 25 / 50 / 75 / 100 % of it, and its peak), to show growth;
- the answer: the interaction energy (and the gradient's norm for b), ``extras["qcmb_dask"]["computed"]``;
- from the run's timeline (``qcmb_dask.timeline``): seconds from the call to the first calculation's start,
  and from the last calculation's end to the answer (the analysis and what is left of the run after it);
  per level, when its last calculation ended and when its result reached the client.

    python benchmarks/large_cluster.py           # (H2O)128: a, about 20-30 min on 2 cores; b, about 10 min
    python benchmarks/large_cluster.py --quick   # (H2O)8 with small cutoffs, the same code path, for CI
"""

from __future__ import annotations

import contextlib
import copy
import json
import resource
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import psutil
from common import parser, warm_client
from screening import cluster_input

import qcmb_dask
from qcmb_dask.clusters.resources import machine_cores
from qcmb_dask.qcmanybody_adapter import hartree_to_kcal

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "water-128.json"
#: the README's suggested starting cutoffs (section 7)
CUTOFFS = {2: 12.0, 3: 8.0}
QUICK_CUTOFFS = {2: 6.0, 3: 4.5}
MIB = 1024 * 1024


def peak_rss_kib() -> tuple[int, int | None]:
    """This process's peak resident set (KiB): ``ru_maxrss``, and ``VmHWM`` (Linux; else None), for ``client.run``.

    They differ for a worker: ``ru_maxrss`` keeps the peak of the process before it exec'd Python, a fork of the
    client holding the client's memory then; ``VmHWM`` is the worker's own.
    """
    hwm = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, hwm


def worker_pid() -> int:
    import os

    return os.getpid()


class RssSampler:
    """RSS of this process and of the workers' processes every ``every`` seconds, in a thread of this process."""

    def __init__(self, worker_pids: list[int], every: float):
        self.every = every
        self.processes = {"client": psutil.Process()} | {f"worker {pid}": psutil.Process(pid) for pid in worker_pids}
        self.samples: dict[str, list[int]] = {name: [] for name in self.processes}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        for name, process in self.processes.items():
            with contextlib.suppress(psutil.Error):  # a worker that was replaced: nothing more from it
                self.samples[name].append(process.memory_info().rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def __enter__(self):
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def summary(self) -> list[str]:
        lines = []
        for name, values in self.samples.items():
            if values:
                quarters = " / ".join(f"{values[(len(values) - 1) * q // 4] / MIB:.0f}" for q in range(5))
                lines.append(
                    f"{name}: {quarters} MiB at 0 / 25 / 50 / 75 / 100 % of the run, peak {max(values) / MIB:.0f}"
                )
        return lines


def _mib(peak: tuple[int, int | None]) -> str:
    maxrss, hwm = peak
    return f"{maxrss / 1024:.0f} / " + ("-" if hwm is None else f"{hwm / 1024:.0f}") + " MiB"


def gradient_input(data: dict) -> dict:
    """The same cluster and model chemistry, 2-body nocp gradient, every dimer."""
    data = copy.deepcopy(data)
    spec = data["specification"]
    spec["driver"] = "gradient"
    spec["keywords"]["max_nbody"] = 2
    for atomic in spec["specification"].values():
        atomic["driver"] = "gradient"
    return data


def one_run(name: str, data: dict, screening: dict | None, every: float) -> None:
    plan = qcmb_dask.plan(data, screening=screening, cache=False)
    per_level = Counter(task.nbody for task in plan)
    shown = " / ".join(f"{per_level[n]:,}" for n in sorted(per_level))
    print(f"{name}: {len(plan):,} calculations ({shown} per level)", flush=True)
    with warm_client(machine_cores()) as client, tempfile.TemporaryDirectory() as store:
        pids = client.run(worker_pid)
        with RssSampler(list(pids.values()), every) as sampler:
            began = time.time()
            result = qcmb_dask.compute(data, cluster=client, cache=store, screening=screening, progress=False)
            answered = time.time()
        wall = answered - began
        workers_peak = client.run(peak_rss_kib)
    record = result.extras["qcmb_dask"]
    print(f"  {len(pids)} workers; wall {wall:.1f} s, {len(plan) / wall:.2f} calculations/s")
    print(f"  computed {record['computed']:,}, from the store {record['from_store']:,}")
    print(f"  peak RSS (ru_maxrss / VmHWM): client {_mib(peak_rss_kib())}; workers "
          + ", ".join(_mib(peak) for peak in workers_peak.values()))  # fmt: skip
    for line in sampler.summary():
        print(f"  RSS {line}")
    props = result.properties
    energy = props.nocp_corrected_interaction_energy
    print(f"  nocp interaction energy: {energy:.8f} Eh = {energy * hartree_to_kcal():.4f} kcal/mol")
    if plan.driver == "gradient":
        gradient = np.asarray(result.return_result)
        norm, largest = np.linalg.norm(gradient), np.abs(gradient).max()
        print(f"  gradient norm: {norm:.8f} Eh/bohr (largest |component| {largest:.6f})")
    if screening:
        estimate = record["screening"]["dropped_energy_estimate"]
        for order, value in estimate.items():
            hartree = value.get("hartree")
            shown = "-" if hartree is None else f"{hartree * hartree_to_kcal():+.4f} kcal/mol"
            print(f"  estimate of the dropped {order}-body energy: {shown} ({value.get('how', value.get('why'))})")
    stream = qcmb_dask.timeline(result)
    starts = [r["start"] for r in stream if r.get("start") is not None]
    stops = [r["stop"] for r in stream if r.get("stop") is not None]
    if starts and stops:
        print(
            f"  timeline: {len(stream):,} records; first calculation began {min(starts) - began:.1f} s after the "
            f"call; last one ended {max(stops) - began:.1f} s in; answer {answered - max(stops):.1f} s after it"
        )
    for nbody, level in record.get("levels", {}).items():
        print(f"  through {nbody}-body: {level['ncalculations']:,} calculations, last ended at {level['ready_s']} s, "
              f"reported at {level['reported_s']} s")  # fmt: skip
    print(f"  run's own wall_time_s: {record.get('wall_time_s')}", flush=True)


def main() -> None:
    args = parser(__doc__).parse_args()
    if args.quick:
        data, screening, every = cluster_input(8), QUICK_CUTOFFS, 0.5
        name = "(H2O)8"
    else:
        data, screening, every = json.loads(EXAMPLE.read_text()), CUTOFFS, 5.0
        name = "(H2O)128"
    cutoffs = ", ".join(f"{n}-body {r:g} A" for n, r in screening.items())
    one_run(f"a. {name} HF/STO-3G 3-body nocp energy, cutoffs {cutoffs}", data, screening, every)
    one_run(f"b. {name} HF/STO-3G 2-body nocp gradient, unscreened", gradient_input(data), None, every)


if __name__ == "__main__":
    main()
