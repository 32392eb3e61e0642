"""The worker side: one fragment through QCEngine, returning a compact result.

Knows nothing about clusters; runs the same under the synchronous scheduler and on any Dask worker.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qcmb_dask.errors import FragmentError
from qcmb_dask.programs.protocol import store_keywords
from qcmb_dask.qcmanybody_adapter import build_fragment_molecule, psi4_external_potentials, return_properties
from qcmb_dask.store import ResultStore, calculation_key, harness_fingerprint
from qcmb_dask.worker import events, walltime, watchdog

logger = logging.getLogger("qcmb_dask")


@dataclass(frozen=True)
class RunPolicy:
    """How hard to try, and where finished work is kept: the same for every fragment of a run."""

    #: the result store's directory; None: no store
    store: str | None = None
    #: stop a fragment after this many seconds (on a worker with a nanny; see :mod:`qcmb_dask.worker.watchdog`)
    timeout: float | None = None
    #: on a convergence failure, try once more with the program's ``escalation_keywords``
    escalate: bool = False
    #: QCEngine harnesses of the user's, registered on whatever runs the fragment if it does not know them yet
    #: (``build_graph``'s graph may run on a cluster no one installed them on)
    harnesses: tuple = ()
    #: a fragment that ran out of GPU memory is tried again "alone" on its card, or on the "cpu"
    gpu_out_of_memory: str = "alone"


#: the choices of ``qcmb_dask.gpu.out-of-memory``
GPU_OUT_OF_MEMORY_CHOICES = ("alone", "cpu")


@dataclass(frozen=True, slots=True)
class FragmentJob:
    """What a worker needs for one calculation besides the parent molecule (small, cheap to ship)."""

    label: str
    nbody: int
    real: tuple
    basis: tuple
    program: str
    specification: dict
    #: 1-based fragment -> atom charges, QCManyBody's ``embedding_charges``; None without embedding.
    embedding_charges: dict[int, list[float]] | None
    #: QCEngine task_config: cores and memory (GiB) for this calculation.
    task_config: dict
    #: keep the whole AtomicResult (ManyBody protocol ``cluster_results: all``)
    keep_atomic_result: bool
    policy: RunPolicy = RunPolicy()
    #: this compute call's id: the fragment's end is logged under it (see :mod:`qcmb_dask.worker.events`)
    run: str = ""
    #: the input's token (:attr:`qcmb_dask.planning.plan.Plan.token`): failure records say which input they are of
    input_token: str = ""
    #: (atom, axis, bohr): the fragment molecule's atom moved along x/y/z, for a Hessian from gradients
    #: (:mod:`qcmb_dask.worker.displaced`); None: the molecule as it is
    displacement: tuple[int, int, float] | None = None
    #: seconds it should take on its cores (the cost model, refined by measured times); a batch worker starts it
    #: only if it fits before its job's walltime (:mod:`qcmb_dask.worker.walltime`); None: not known
    estimate_s: float | None = None


@dataclass
class FragmentOutput:
    """The compact result the analysis needs: energies/derivatives, and the AtomicResult only when asked."""

    label: str
    nbody: int
    properties: dict[str, Any]
    wall_time: float
    provenance: dict[str, Any] = field(default_factory=dict)
    atomic_result: Any = None
    #: taken from the result store, not computed in this run
    from_store: bool = False
    #: the convergence fallback keywords this result needed, if any
    escalated: dict[str, Any] | None = None
    #: why the result could not be written to the store (disk full, permissions), if it could not
    store_error: str | None = None


@dataclass
class FragmentFailure:
    """A fragment whose calculation failed: a value, so that one failure does not stop the others."""

    label: str
    nbody: int
    error: FragmentError


def atomic_input(job: FragmentJob, molecule, extra_keywords: dict[str, Any] | None = None):
    """The AtomicInput for a fragment; embedding charges go where the program expects them."""
    from qcelemental.models.v2 import AtomicInput

    specification = copy.deepcopy(job.specification)
    if extra_keywords:
        specification["keywords"] = {**specification.get("keywords", {}), **extra_keywords}
    return psi4_external_potentials(AtomicInput(molecule=molecule, specification=specification), molecule, job.program)


def run_fragment(parent, job: FragmentJob, after: Any = None) -> FragmentOutput | FragmentFailure:
    """Run one fragment, or take it from the store. ``after`` only orders the graph and is ignored.

    A failed calculation is returned as a :class:`FragmentFailure`, not raised: the other fragments
    go on, and the analysis lists every failure at once. On a Dask worker its end is logged on the
    scheduler (the live page and the timeline read it).
    """
    start = time.time()
    out = calculate(parent, job)
    ok = isinstance(out, FragmentOutput)
    events.fragment_ended(job.run, job.label, job.nbody, ok, ok and out.from_store, start)
    return out


def energy_of(parent, job: FragmentJob) -> FragmentOutput | FragmentFailure:
    """:func:`run_fragment`, its output cut to the energy and where it came from: what an energy-screened run's
    decisions read on the client (a gradient, the provenance or a whole AtomicResult would travel for nothing; the
    store keeps them for the assembly)."""
    out = run_fragment(parent, job)
    if isinstance(out, FragmentFailure):
        return out
    return FragmentOutput(out.label, out.nbody, {"energy": out.properties["energy"]}, out.wall_time,
                          from_store=out.from_store)  # fmt: skip


def calculate(parent, job: FragmentJob) -> FragmentOutput | FragmentFailure:
    """One calculation, or its stored result, without the fragment event (:func:`run_fragment` logs it; the
    gradients of a Hessian from differences leave it to their assembly)."""
    import qcengine

    from qcmb_dask.programs import register_shipped
    from qcmb_dask.worker.warmup import prime_qcengine

    register_shipped()  # this worker process may not have registered the programs qcmb_dask ships yet
    prime_qcengine()  # on a cluster qcmb_dask did not start, nothing did it before this worker's first fragment
    if job.policy.harnesses:
        from qcmb_dask.programs import register

        known = qcengine.list_all_programs()
        register([h for h in job.policy.harnesses if h.name.lower() not in known])
    job = with_worker_memory_share(job)

    start = time.time()
    molecule = build_fragment_molecule(parent, job.real, job.basis, job.embedding_charges)
    if job.displacement is not None:
        molecule = displaced(molecule, *job.displacement)
    inp = atomic_input(job, molecule)
    driver = inp.specification.driver.value
    store, key = _store_and_key(job, inp)
    if store is not None:
        stored = _as_this_run_asked(store.load(key, driver, exact_driver=job.keep_atomic_result), inp, job)
        if stored is not None:
            return _output(job, stored, driver, start, from_store=True)

    walltime.before_fragment(job.estimate_s, job.label)  # on a batch worker: leaves if it would not fit
    began = time.time()
    with watchdog.limit(job.policy.timeout, job.label, job.run):
        result = qcengine.compute(inp, job.program, raise_error=False, task_config=job.task_config)
        escalated = None
        if not result.success and job.policy.escalate and result.error.error_type == "convergence_error":
            escalated = escalation_keywords(job.program)
            if escalated:
                logger.warning("qcmb_dask: fragment %s did not converge; retrying once with %s", job.label, escalated)
                retry = atomic_input(job, molecule, extra_keywords=escalated)
                result = qcengine.compute(retry, job.program, raise_error=False, task_config=job.task_config)
        if not result.success and out_of_gpu_memory(result):
            result = _after_gpu_out_of_memory(job, molecule, retry if escalated else inp, result, escalated)
    walltime.after_fragment(job.estimate_s, time.time() - began)
    if not result.success:
        message = result.error.error_message
        if escalated:
            message = f"{message} (also with the convergence fallback {escalated})"
        record = _keep_failure(store, key, driver, result, job)
        return FragmentFailure(job.label, job.nbody, fragment_error(job, result.error.error_type, message, record))

    output = _output(job, result, driver, start, from_store=False, escalated=escalated)
    if store is not None:
        try:
            store.save(key, driver, result.model_dump_json())
            store.forget_failure(key, driver)
        except OSError as err:
            output.store_error = f"{store.path(key, driver)}: {err}"
            logger.warning("qcmb_dask: could not store the result of %s: %s", job.label, output.store_error)
    return output


def out_of_gpu_memory(result) -> bool:
    """Whether a failed calculation ran out of GPU memory (a ``resource_error`` with the protocol's marker)."""
    from qcmb_dask.programs.protocol import GPU_OUT_OF_MEMORY

    error = result.error
    return error.error_type == "resource_error" and GPU_OUT_OF_MEMORY in (error.error_message or "")


def _after_gpu_out_of_memory(job: FragmentJob, molecule, inp, failed, escalated: dict | None = None):
    """Try a fragment that ran out of GPU memory once more: alone on its card (its card's other fragment
    processes wait) or on this worker's CPU (``qcmb_dask.gpu.out-of-memory``); the pinned settings give the same
    number either way. The first failure's message stays with the second's, should that fail too."""
    import qcengine

    from qcmb_dask.programs.protocol import alone_on_the_gpu

    how = job.policy.gpu_out_of_memory
    logger.warning(
        "qcmb_dask: fragment %s ran out of GPU memory; trying it again %s",
        job.label,
        "alone on its GPU" if how == "alone" else "on the CPU",
    )
    if how == "cpu":
        result = qcengine.compute(
            atomic_input(job, molecule, extra_keywords={**(escalated or {}), "device": "cpu"}),
            job.program,
            raise_error=False,
            task_config=job.task_config,
        )
    else:
        with alone_on_the_gpu():
            result = qcengine.compute(inp, job.program, raise_error=False, task_config=job.task_config)
    if not result.success:
        first = failed.error.error_message.splitlines()[0] if failed.error.error_message else "out of GPU memory"
        result.error.error_message = f"{result.error.error_message} (tried again {how} after: {first})"
    return result


def displaced(molecule, atom: int, axis: int, step: float):
    """The molecule with one atom moved by ``step`` bohr along ``axis`` (its frame is fixed: no reorientation)."""
    import numpy as np

    geometry = np.array(molecule.geometry, dtype=float)
    geometry[atom, axis] += step
    return molecule.model_copy(update={"geometry": geometry})


def with_worker_memory_share(job: FragmentJob) -> FragmentJob:
    """A job without a memory figure (``build_graph`` cannot know where it will run) gets this worker's share:
    ``MEMORY_FRACTION`` of the worker's memory limit per thread, times its cores; outside a worker, of the
    machine's memory per core. QCEngine's own default would give every fragment most of the machine."""
    if job.task_config.get("memory"):
        return job
    import dataclasses
    import os

    import psutil

    from qcmb_dask.options import MEMORY_FRACTION

    cores = int(job.task_config.get("ncores") or 1)
    try:
        from distributed import get_worker

        worker = get_worker()
        per_thread = worker.memory_manager.memory_limit / worker.state.nthreads
    except (ImportError, ValueError, AttributeError, TypeError, ZeroDivisionError):
        per_thread = psutil.virtual_memory().total / (os.cpu_count() or 1)
    memory = round(MEMORY_FRACTION * per_thread * cores / 2**30, 2)
    return dataclasses.replace(job, task_config={**job.task_config, "memory": memory})


def in_store(parent, job: FragmentJob) -> bool:
    """Whether the store holds this fragment's result already: the key a run would look up, without running it."""
    from qcmb_dask.programs import register_shipped

    register_shipped()
    inp = atomic_input(job, build_fragment_molecule(parent, job.real, job.basis, job.embedding_charges))
    store, key = _store_and_key(job, inp)
    return store is not None and store.has(key, inp.specification.driver.value)


def _store_and_key(job: FragmentJob, inp) -> tuple[ResultStore | None, str | None]:
    if not job.policy.store:
        return None, None
    import qcengine

    harness = qcengine.get_program(job.program)
    version = harness.get_version() or "unknown"
    spec = inp.specification
    keywords = store_keywords(harness, spec.model.method, dict(spec.keywords))
    key = calculation_key(inp, job.program, version, harness_fingerprint(harness), keywords=keywords)
    return ResultStore(Path(job.policy.store)), key


def _keep_failure(store: ResultStore | None, key: str, driver: str, failed, job: FragmentJob) -> str | None:
    """Write QCEngine's FailedOperation (input, error, traceback) beside the store, with which fragment of which
    input it was (for ``qcmb-dask failures``); its path, or None."""
    if store is None:
        return None
    model = job.specification.get("model", {})
    fragment = {
        "label": job.label,
        "nbody": job.nbody,
        "program": job.program,
        "method": model.get("method"),
        "basis": model.get("basis"),
        "input": job.input_token,
        "when": time.time(),
    }
    record = {"qcmb_dask": fragment, **json.loads(failed.model_dump_json())}
    try:
        return str(store.save_failure(key, driver, json.dumps(record)))
    except OSError as err:
        logger.warning("qcmb_dask: could not keep the failure record of %s: %s", job.label, err)
        return None


def _as_this_run_asked(stored: dict | None, inp, job: FragmentJob):
    """A stored result as this run's AtomicResult, or None where it cannot stand in for the calculation.

    Only the whole AtomicResult (``cluster_results: all``) shows protocols: it gets this run's input, and
    stdout only when asked for; a stored result without the stdout this run asks for is recomputed.
    """
    if stored is None:
        return None
    from qcelemental.models.v2 import AtomicResult

    if job.keep_atomic_result:
        if not inp.specification.protocols.stdout:
            stored["stdout"] = None
        elif stored.get("stdout") is None:
            return None
        stored["input_data"] = inp.model_dump()
    return AtomicResult.model_validate(stored)


def escalation_keywords(program: str) -> dict[str, Any] | None:
    """The harness's documented convergence fallback (``escalation_keywords``), None if it has none."""
    import qcengine

    from qcmb_dask.programs.protocol import escalation_keywords as of_harness

    return of_harness(qcengine.get_program(program, check=False))


def fragment_error(job: FragmentJob, error_type: str, message: str, record: str | None = None) -> FragmentError:
    model = job.specification.get("model", {})
    return FragmentError(
        job.label,
        job.nbody,
        job.program,
        model.get("method", "?"),
        model.get("basis", "?"),
        error_type,
        message,
        record=record,
    )


def worker_lost_error(job: FragmentJob, attempts: int | None, timeout: float | None) -> FragmentError:
    """The error for a fragment whose worker died under it (``KilledWorker``), or that ran out of time."""
    tries = f"{attempts} tries" if attempts else "every try"
    if timeout:
        return fragment_error(
            job,
            "timeout",
            f"ran longer than timeout_per_task={timeout:g} s on {tries}; its worker was stopped each time",
        )
    return fragment_error(
        job,
        "worker_lost",
        f"its worker process died while running it on {tries} (killed, crashed, or out of memory: see the worker "
        "logs; a batch job that reached its walltime also ends this way)",
    )


def _output(job: FragmentJob, result, driver: str, start: float, from_store: bool, escalated=None) -> FragmentOutput:
    return FragmentOutput(
        label=job.label,
        nbody=job.nbody,
        properties=return_properties(result, driver),
        wall_time=time.time() - start,
        provenance=result.provenance.model_dump(),
        atomic_result=result if job.keep_atomic_result else None,
        from_store=from_store,
        escalated=escalated,
    )
