"""Which device each fragment runs on: where it should finish first, given the run's CPU and GPU workers.

A model chemistry chooses with the PySCF keyword ``device``: ``"cpu"`` (the default) keeps every fragment on
CPU, ``"gpu"`` sends every fragment gpu4pyscf can run to a GPU worker, ``"auto"`` decides per fragment. The
decision is list scheduling by earliest finish: fragments in the order they will be started (longest first),
each to the device whose next free worker would finish it first, counting what is already placed there. A
water monomer takes as long on a GPU as on a core, so with CPU workers at hand the monomers stay there and
the GPUs take the k-mers, where they are 5-15x faster (``../shared/gpu/README.md``, and the table below).

Pure: no Dask, no CUDA. The times come from :mod:`qcmb_dask.planning.cost` (one-core seconds, refined by the
store's measurements) and :func:`gpu_seconds`.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from qcmb_dask.errors import InvalidInput

DEVICES = ("cpu", "gpu", "auto")

#: A GPU fragment: fixed seconds (CUDA set-up, integral screening on the host, transfers) plus the one-core
#: estimate over a speed-up. Fitted to gpu4pyscf 1.9 on one H200 (DF-HF + DF-MP2/cc-pVTZ water clusters,
#: ``../shared/gpu/README.md``): a monomer 0.39 s on the GPU (0.67 one-core seconds in the model), a dimer
#: 0.45 s (6.3), a trimer 0.73 s (30). The store's measured GPU times refine it as they do the CPU's.
GPU_FIXED_S = 0.39
GPU_SPEEDUP = 90.0
#: Throughput of one card with N fragment processes sharing it, over one process: the 35 fragments of the (H2O)6
#: expansion took 15.6 s with 1 process, 14.6 s with 2 and 12.6 s with 4 (no MPS); beyond 4 taken as flat.
SHARING_THROUGHPUT = {1: 1.0, 2: 1.07, 4: 1.24}


def sharing_stretch(processes_per_gpu: int) -> float:
    """How much longer one fragment takes when ``processes_per_gpu`` fragments share its card."""
    n = max(1, int(processes_per_gpu))
    known = sorted(SHARING_THROUGHPUT)
    below = max(k for k in known if k <= n)
    above = min((k for k in known if k >= n), default=below)
    if above == below:
        throughput = SHARING_THROUGHPUT[below]
    else:
        share = (n - below) / (above - below)
        throughput = SHARING_THROUGHPUT[below] + share * (SHARING_THROUGHPUT[above] - SHARING_THROUGHPUT[below])
    return n / throughput


def gpu_seconds(one_core_seconds: float, processes_per_gpu: int = 1, factor: float = 1.0) -> float:
    """Seconds a fragment of ``one_core_seconds`` (the cost model's) takes on a GPU shared by
    ``processes_per_gpu`` fragments; ``factor``: what measured GPU times say of the model (1: none yet)."""
    return (GPU_FIXED_S + one_core_seconds / GPU_SPEEDUP) * sharing_stretch(processes_per_gpu) * factor


def model_seconds(task) -> float:
    """The cost model's own one-core estimate of ``task``, which the GPU model was fitted against: a CPU's measured
    speed (the task's refined ``cost``) says nothing of a GPU's, which the store's GPU times refine instead."""
    return task.model_cost or task.cost


@dataclass(frozen=True)
class Workers:
    """What the run's cluster has: CPU workers with ``threads`` cores per fragment, and GPU workers."""

    cpu: int
    gpu: int
    threads: int = 1
    processes_per_gpu: int = 1
    #: measured GPU time over :func:`gpu_seconds`'s, from the store's history (1: none yet)
    gpu_factor: float = 1.0


@dataclass
class Placement:
    """label -> ``"cpu"`` or ``"gpu"``, and what the plan and the live page say about it."""

    devices: dict[str, str] = field(default_factory=dict)
    #: estimated seconds until the last fragment ends: as placed, and with every fragment on CPU
    makespan_s: float = 0.0
    cpu_only_makespan_s: float = 0.0
    workers: Workers | None = None
    #: fragments that asked for a GPU but run on CPU (gpu4pyscf lacks their method): label -> why
    fallbacks: dict[str, str] = field(default_factory=dict)
    #: whether the fragments not on a GPU ask for a CPU worker (where the CPU workers beside the GPU ones declare
    #: one): a long CPU fragment then never holds a GPU worker's thread
    cpu_restricted: bool = False

    def gpu_seconds(self, task) -> float:
        """Seconds ``task`` should take on one of this placement's GPU workers."""
        workers = self.workers or Workers(cpu=0, gpu=1)
        return gpu_seconds(model_seconds(task), workers.processes_per_gpu, workers.gpu_factor)

    def counts(self) -> dict[str, int]:
        counts = Counter(self.devices.values())
        return {"cpu": counts.get("cpu", 0), "gpu": counts.get("gpu", 0)}

    def on_gpu(self) -> int:
        return self.counts()["gpu"]

    def summary(self) -> str:
        """One line: how many fragments go to each device, and why."""
        counts = self.counts()
        if not counts["gpu"] and not self.fallbacks:
            return ""
        line = f"placement: {counts['gpu']} fragment(s) on GPU, {counts['cpu']} on CPU"
        if self.workers is not None:
            line += (
                f" ({self.workers.gpu} GPU worker(s), {self.workers.processes_per_gpu} per card; "
                f"{self.workers.cpu} CPU worker(s))"
            )
        if self.makespan_s and self.cpu_only_makespan_s:
            line += (
                f": each where it should finish first, about {_short(self.makespan_s)} against "
                f"{_short(self.cpu_only_makespan_s)} on the CPU workers alone"
                if self.workers and self.workers.cpu
                else f": about {_short(self.makespan_s)}"
            )
        if self.fallbacks:
            why = next(iter(self.fallbacks.values()))
            line += f"; {len(self.fallbacks)} asked for a GPU but run on CPU ({why})"
        return line


@dataclass
class Load:
    """When each worker is next free, as placed so far (seconds): several inputs placed one after another
    (``compute_many``) share one, so that each sees the fragments placed before it."""

    cpu_free: list[float]
    gpu_free: list[float]

    @classmethod
    def idle(cls, workers: Workers) -> Load:
        return cls([0.0] * workers.cpu, [0.0] * workers.gpu)


def place(
    tasks: Iterable,
    device_of: Mapping[str, str],
    workers: Workers,
    unsupported: Callable[[object], str | None] = lambda task: None,
    load: Load | None = None,
) -> Placement:
    """Place ``tasks`` (:class:`~qcmb_dask.planning.plan.FragmentTask`, with one-core ``cost``).

    ``device_of``: model chemistry -> its ``device`` setting, for the model chemistries whose program can run on a
    GPU; the others' fragments run on CPU and are not in the placement's ``devices``. ``unsupported(task)``: why
    a GPU cannot run it, or None. A model chemistry that asks for ``gpu`` on a cluster without GPU workers is an
    :class:`~qcmb_dask.errors.InvalidInput` here, before anything is submitted; ``auto`` without one runs on CPU.
    ``load``: what is placed on the workers already (updated here); default: idle workers.
    """
    tasks = sorted(tasks, key=lambda t: t.cost, reverse=True)
    threads = max(1, workers.threads)
    asked = {device_of.get(t.model_chemistry, "cpu") for t in tasks}
    if "gpu" in asked and workers.gpu < 1:
        chemistries = sorted(mc for mc, device in device_of.items() if device == "gpu")
        raise InvalidInput(
            f"model chemistr{'y' if len(chemistries) == 1 else 'ies'} {', '.join(chemistries)} ask(s) for "
            "device 'gpu', but no worker of this cluster has a GPU. Give the embedded cluster GPUs (gpus=N, "
            "qcmb-dask run --gpus N), a batch profile with a GPU partition (qcmb_dask.batch.gpus-per-job), or "
            "workers started with --resources GPU=1 (workers of a cluster you give are counted when the run starts: "
            "start them first); or use device 'auto' (GPU where there is one) or 'cpu'."
        )
    load = load if load is not None else Load.idle(workers)
    cpu_free, gpu_free = load.cpu_free, load.gpu_free
    placement = Placement(workers=workers)
    cpu_alone = [0.0] * max(1, workers.cpu)
    gpu_terms = (workers.processes_per_gpu, workers.gpu_factor)
    for task in tasks:
        cpu_time = task.cost / threads
        heapq.heapreplace(cpu_alone, cpu_alone[0] + cpu_time)
        wanted = device_of.get(task.model_chemistry)
        device = "cpu"
        if wanted in ("gpu", "auto") and workers.gpu:
            why_not = unsupported(task)
            if why_not:
                if wanted == "gpu":
                    placement.fallbacks[task.label] = why_not
            elif wanted == "gpu" or not cpu_free:
                device = "gpu"
            else:
                gpu_time = gpu_seconds(model_seconds(task), *gpu_terms)
                device = "gpu" if gpu_free[0] + gpu_time < cpu_free[0] + cpu_time else "cpu"
        if device == "gpu":
            heapq.heapreplace(gpu_free, gpu_free[0] + gpu_seconds(model_seconds(task), *gpu_terms))
        elif cpu_free:
            heapq.heapreplace(cpu_free, cpu_free[0] + cpu_time)
        else:  # only GPU workers: a CPU fragment runs on the core that drives a card
            heapq.heapreplace(gpu_free, gpu_free[0] + cpu_time)
        if wanted is not None:
            placement.devices[task.label] = device
    placement.makespan_s = max([*cpu_free, *gpu_free], default=0.0)
    placement.cpu_only_makespan_s = max(cpu_alone) if workers.cpu else 0.0
    return placement


def _short(seconds: float) -> str:
    from qcmb_dask.planning.cost import duration

    return duration(seconds)
