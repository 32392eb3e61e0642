"""GPU workers: each worker process of a GPU job (or of the embedded cluster) takes its card, or its share of one.

Loaded on each worker as a Dask preload (``--preload qcmb_dask.worker.gpu``). Distributed runs a worker's
preloads (``dask_setup``) in ``Worker.start_unsafe`` after the worker listens and has its name, and before it
registers with the scheduler, so the resource declared here is in the worker's first message to the scheduler:
no fragment placed on a GPU (Dask resources ``{"GPU": 1}``) reaches a worker without one, not even for a moment.
It also runs before any fragment, so before any CuPy import in the worker process: CUDA reads
``CUDA_VISIBLE_DEVICES`` when it is first initialised, CuPy reads ``CUPY_GPU_MEMORY_LIMIT`` when it first makes
its memory pool, and both are set here first.

What the job script (or the embedded cluster) tells it, in the environment:

- :data:`~qcmb_dask.keys.GPUS_VARIABLE` (``QCMB_DASK_GPUS``): the GPUs of this job or machine, a count (``2``:
  the first two of the devices the batch system made visible, ``CUDA_VISIBLE_DEVICES``, else devices 0 and 1)
  or a comma list of device ids (``0,2`` or ``GPU-<uuid>,...``: those, as given);
- :data:`~qcmb_dask.keys.PROCESSES_PER_GPU_VARIABLE` (``QCMB_DASK_PROCESSES_PER_GPU``): N worker processes share
  one card (default ``qcmb_dask.gpu.processes-per-gpu``);
- :data:`INDEX_VARIABLE` (``QCMB_DASK_WORKER_INDEX``), optional: this worker's index in its job or machine. Without
  it, the trailing integer of the worker's name: ``dask worker --nworkers 4 --name job-7`` names its workers
  ``job-7-0`` ... ``job-7-3``, as dask-jobqueue's jobs do. (A job of a single worker process is named without
  an index; its job script exports ``QCMB_DASK_WORKER_INDEX=0``.)

Worker ``i`` is a GPU worker when ``i < GPUs x N``: it sees only card ``i // N`` (``CUDA_VISIBLE_DEVICES``), its
CuPy pool may take ``qcmb_dask.gpu.memory-fraction / N`` of the card (``CUPY_GPU_MEMORY_LIMIT``, a percentage),
and it declares the Dask resource :data:`~qcmb_dask.keys.GPU_RESOURCE` = 1. Any other worker is a CPU worker:
``CUDA_VISIBLE_DEVICES=""``, so a CPU fragment never touches a card, and it declares
:data:`~qcmb_dask.keys.CPU_RESOURCE` = 1, which the run's CPU fragments then ask for. Without
``QCMB_DASK_GPUS`` the preload does nothing. One line at INFO says what the worker became.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass

from qcmb_dask import compat, keys
from qcmb_dask.keys import GPU_RESOURCE, GPUS_VARIABLE, PROCESSES_PER_GPU_VARIABLE

logger = logging.getLogger("qcmb_dask")

#: a worker's index in its job or machine, where its name does not end with it (the embedded cluster sets it)
INDEX_VARIABLE = keys.WORKER_INDEX_VARIABLE
#: what CUDA and CuPy read
CUDA_VARIABLE = "CUDA_VISIBLE_DEVICES"
CUPY_LIMIT_VARIABLE = "CUPY_GPU_MEMORY_LIMIT"

_TRAILING_INTEGER = re.compile(r"(\d+)$")


def worker_index(name, given: str | None = None) -> int | None:
    """This worker's index in its job or machine: ``given`` (``QCMB_DASK_WORKER_INDEX``) if set, else the trailing
    integer of its name (``job-7-2`` -> 2, an int name as LocalCluster gives -> itself); None if neither says."""
    if given is not None and str(given).strip() != "":
        try:
            return int(str(given).strip())
        except ValueError:
            raise ValueError(f"{INDEX_VARIABLE}={given!r}: expected the worker's index, a whole number.") from None
    if isinstance(name, int) and not isinstance(name, bool):
        return name
    match = _TRAILING_INTEGER.search(str(name)) if name is not None else None
    return int(match.group(1)) if match else None


def device_list(gpus: str, cuda_visible: str | None = None) -> list[str]:
    """The cards of this job or machine, in order: ``gpus`` a count (the first of ``cuda_visible``, what the batch
    system made visible, else ``0 .. count-1``) or a comma list of device ids (those)."""
    text = str(gpus).strip()
    if text.isdigit():
        count = int(text)
        visible = [d.strip() for d in (cuda_visible or "").split(",") if d.strip()]
        return visible[:count] if visible else [str(i) for i in range(count)]
    devices = [d.strip() for d in text.split(",") if d.strip()]
    if not devices:
        raise ValueError(f"{GPUS_VARIABLE}={gpus!r}: expected a number of GPUs or a comma list of device ids.")
    return devices


def memory_limit(fraction: float, processes_per_gpu: int) -> str:
    """``CUPY_GPU_MEMORY_LIMIT`` for one of ``processes_per_gpu`` processes sharing ``fraction`` of a card:
    a percentage of the card's memory, as CuPy reads it (0.9 shared by 2: ``"45%"``)."""
    percent = round(100.0 * float(fraction) / max(1, int(processes_per_gpu)), 2)
    return f"{percent:g}%"


@dataclass(frozen=True)
class WorkerCard:
    """What one worker process becomes: its card (None: a CPU worker) and its CuPy pool limit."""

    index: int | None
    card: str | None
    memory_limit: str | None = None
    #: the job's GPUs and processes per GPU, for the log line
    gpus: int = 0
    processes_per_gpu: int = 1

    @property
    def gpu(self) -> bool:
        return self.card is not None

    def environment(self) -> dict[str, str]:
        """The variables this worker process sets for itself."""
        if self.card is None:
            return {CUDA_VARIABLE: ""}
        return {CUDA_VARIABLE: self.card, CUPY_LIMIT_VARIABLE: self.memory_limit or ""}

    def describe(self) -> str:
        if self.card is None:
            return (
                f"qcmb_dask: CPU worker (index {self.index}; the {self.gpus * self.processes_per_gpu} GPU worker(s) of "
                f"this job are 0-{self.gpus * self.processes_per_gpu - 1}): no GPU visible (CUDA_VISIBLE_DEVICES='')"
                if self.gpus
                else f"qcmb_dask: CPU worker (index {self.index}; no GPUs here): CUDA_VISIBLE_DEVICES=''"
            )
        return (
            f"qcmb_dask: GPU worker (index {self.index}): card {self.card}, shared by {self.processes_per_gpu} "
            f"process(es), CuPy pool limit {self.memory_limit} of its memory; resource {GPU_RESOURCE}=1"
        )


def card_for(index: int | None, devices: list[str], processes_per_gpu: int, fraction: float) -> WorkerCard:
    """Worker ``index`` of a job with ``devices`` shared by ``processes_per_gpu`` processes each: card
    ``index // processes_per_gpu`` if ``index < len(devices) x processes_per_gpu``, else a CPU worker."""
    n = int(processes_per_gpu)
    if n < 1:
        raise ValueError(f"{PROCESSES_PER_GPU_VARIABLE}={processes_per_gpu!r}: expected at least 1.")
    if index is None or index < 0 or index >= len(devices) * n:
        return WorkerCard(index, None, gpus=len(devices), processes_per_gpu=n)
    return WorkerCard(index, devices[index // n], memory_limit(fraction, n), len(devices), n)


def from_environment(name, environ: Mapping[str, str] | None = None) -> WorkerCard | None:
    """The card the environment gives a worker called ``name``; None without ``QCMB_DASK_GPUS``."""
    environ = os.environ if environ is None else environ
    gpus = environ.get(GPUS_VARIABLE)
    if gpus is None or gpus.strip() == "":
        return None
    from qcmb_dask.options import setting  # a leaf: the shipped defaults under the site's and the user's config

    per_gpu = environ.get(PROCESSES_PER_GPU_VARIABLE) or setting("gpu.processes-per-gpu")
    try:
        per_gpu = int(per_gpu)
    except (TypeError, ValueError):
        raise ValueError(f"{PROCESSES_PER_GPU_VARIABLE}={per_gpu!r}: expected a whole number.") from None
    fraction = float(setting("gpu.memory-fraction"))
    devices = device_list(gpus, environ.get(CUDA_VARIABLE))
    return card_for(worker_index(name, environ.get(INDEX_VARIABLE)), devices, per_gpu, fraction)


def apply(chosen: WorkerCard, worker=None, environ: MutableMapping[str, str] | None = None) -> None:
    """Set this process's variables (before CUDA or CuPy is loaded) and, on a worker, its GPU resource."""
    environ = os.environ if environ is None else environ
    environ.update(chosen.environment())
    if not chosen.gpu:
        environ.pop(CUPY_LIMIT_VARIABLE, None)
    if worker is not None:
        # a CPU worker given GPU=1 by hand (--resources) would be sent GPU fragments it has no card for
        compat.resources_before_registration(
            worker,
            {GPU_RESOURCE: 1 if chosen.gpu else None, keys.CPU_RESOURCE: None if chosen.gpu else 1},
        )


def dask_setup(worker) -> None:
    """The preload's entry point (``dask worker --preload qcmb_dask.worker.gpu``): before the worker registers."""
    chosen = from_environment(worker.name)
    if chosen is None:
        logger.debug("qcmb_dask: %s is not set: the GPU preload leaves this worker as it is", GPUS_VARIABLE)
        return
    if not chosen.gpu and chosen.index is None:
        logger.warning(
            "qcmb_dask: worker %r has no index (no %s, no trailing number in its name): a CPU worker",
            worker.name,
            INDEX_VARIABLE,
        )
    apply(chosen, worker)
    logger.info(chosen.describe())


def program_unavailable(program: str) -> str | None:
    """On a GPU worker: why ``program`` cannot run on this worker's GPU, or None (asked before a run's fragments
    are submitted, so that a worker without gpu4pyscf is a refusal naming the package, not a failure per
    fragment)."""
    import qcengine

    from qcmb_dask.programs import protocol, register_shipped

    register_shipped()
    try:
        harness = qcengine.get_program(program, check=False)
    except Exception as err:  # not registered on this worker: its fragments would fail the same way
        return f"this worker does not know the program {program!r} ({err})"
    return protocol.gpu_unavailable(harness)
