"""Names on the wire: graph keys, event topics, metadata paths and the modules a scheduler loads by name.

A leaf: the graph (client), the fragments (workers) and the live page (scheduler) must agree on these, and
none of them may import the others to learn them.
"""

from __future__ import annotations

#: Workers log fragment ends on this scheduler event topic (batched per worker).
FRAGMENT_TOPIC = "qcmb-fragment"
#: A worker ended by the timeout watchdog logs this event before it exits.
TIMEOUT_EVENT = "qcmb-dask-timeout"
#: A batch worker that leaves before its job's walltime logs this event; the client submits its replacement.
LEAVING_TOPIC = "qcmb-dask-leaving"
#: Batch workers share measured / estimated fragment times as scheduler metadata under this root.
PACE_METADATA = "qcmb-dask-pace"
#: The worker plugin that keeps a batch worker's fragments inside its job's walltime.
WALLTIME_PLUGIN = "qcmb-dask-walltime"
#: Batch workers load it at start (``--preload``): :mod:`qcmb_dask.worker.walltime`.
WALLTIME_PRELOAD = "qcmb_dask.worker.walltime"
#: What a batch job script exports for it: the job's end (epoch seconds), its walltime and the margin (seconds).
DEADLINE_VARIABLE = "QCMB_DASK_JOB_DEADLINE"
WALLTIME_VARIABLE = "QCMB_DASK_JOB_WALLTIME"
MARGIN_VARIABLE = "QCMB_DASK_JOB_MARGIN"
#: The client publishes the run and each level's result as scheduler metadata under this root.
METADATA_ROOT = "qcmb"
#: The Dask worker plugin that registers user harnesses on every worker.
HARNESS_PLUGIN = "qcmb-dask-harnesses"
#: The scheduler plugin that keeps every run's fragment counts and timeline for the live page.
RUNS_PLUGIN = "qcmb-dask-runs"
#: The worker plugin that lets QCManyBody accept embedding charges on every worker, once per process.
EMBEDDING_PLUGIN = "qcmb-dask-embedding-charges"
#: The worker plugin that gives each worker one ``ONE_FRAGMENT_RESOURCE`` (see :mod:`qcmb_dask.clusters.given`).
ONE_FRAGMENT_PLUGIN = "qcmb-dask-one-fragment-per-process"
#: The Dask worker resource every task of a run asks for where workers have threads to spare for a second one.
ONE_FRAGMENT_RESOURCE = "qcmb-dask-process"
#: The Dask worker resource a worker with a GPU of its own (or its share of one) declares; a fragment placed on a
#: GPU asks for one, so it never lands on a worker without one.
GPU_RESOURCE = "GPU"
#: The Dask worker resource the CPU workers beside GPU workers declare (the GPU preload sets it); a fragment placed
#: on a CPU asks for one there, so that a long CPU fragment never holds a GPU worker's only thread.
CPU_RESOURCE = "CPU"
#: Workers of GPU jobs load it at start (``--preload``): :mod:`qcmb_dask.worker.gpu` gives each its card.
GPU_PRELOAD = "qcmb_dask.worker.gpu"
#: What a GPU job script (or the embedded cluster) tells that preload: GPUs per job, fragment processes per GPU.
GPUS_VARIABLE = "QCMB_DASK_GPUS"
PROCESSES_PER_GPU_VARIABLE = "QCMB_DASK_PROCESSES_PER_GPU"
#: A worker's index in its job or machine, where its name has none (the embedded cluster; a one-worker job).
WORKER_INDEX_VARIABLE = "QCMB_DASK_WORKER_INDEX"

#: The scheduler loads the live many-body page (/qcmb) from this module (``distributed.scheduler.http.routes``).
LIVE_PAGE_ROUTES = "qcmb_dask.diagnostics.page"
#: The scheduler preload that shortens Dask's batching of messages to workers.
PROMPT_SENDS = "qcmb_dask.clusters.preload"
#: The scheduler preload that registers the live page's plugin from the scheduler's start.
RUNS_PRELOAD = "qcmb_dask.diagnostics.runs_on_scheduler"

_NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")


def nbody_word(nbody: int) -> str:
    """A key word for a level with letters only: Dask's key grouping stops at the first word with a digit."""
    return _NUMBER_WORDS[nbody - 1] if 1 <= nbody <= len(_NUMBER_WORDS) else "many"


def fragment_prefix(nbody: int) -> str:
    """The key prefix of a level's fragments (``fragment-two-body``): the dashboard and the page group by it."""
    return f"fragment-{nbody_word(nbody)}-body"


def fragment_key(nbody: int, index: int, run: str, token: str) -> str:
    """``fragment-two-body-17-<run>-<token>``: the scheduler's page tells runs apart by the run id in the key."""
    return f"{fragment_prefix(nbody)}-{index}-{run}-{token}"


def fragment_key_run(key) -> tuple[str, int] | None:
    """(run id, n-body level; 0 beyond twelve) of a fragment key, None for any other key."""
    if not isinstance(key, str) or not key.startswith("fragment-"):
        return None
    parts = key.split("-")
    if len(parts) < 6:
        return None
    word = parts[1]
    return parts[-2], (_NUMBER_WORDS.index(word) + 1 if word in _NUMBER_WORDS else 0)
