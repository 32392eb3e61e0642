"""A run's fragments on CPU and GPU workers: what each model chemistry asks for, and the placement on a session.

The choice is the PySCF keyword ``device`` (``cpu``, ``gpu`` or ``auto``), a model chemistry's own: an input can
run its expensive level on GPUs and its cheap one on CPU. The placement itself is pure
(:mod:`qcmb_dask.planning.placement`); this module gives it the session's workers, the store's measured GPU
speed and gpu4pyscf's list of what it can run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from qcmb_dask.planning import cost_history
from qcmb_dask.planning.placement import Load, Placement, Workers, place
from qcmb_dask.planning.plan import Plan
from qcmb_dask.programs import protocol


def device_of(plan: Plan) -> dict[str, str]:
    """model chemistry -> ``cpu``, ``gpu`` or ``auto`` (its keyword ``device``, absent: ``cpu``), for the model
    chemistries whose program can run on a GPU (:func:`qcmb_dask.programs.protocol.runs_on_gpus`)."""
    import qcengine

    devices = {}
    for mc, entry in plan.specifications.items():
        try:
            harness = qcengine.get_program(entry["program"], check=False)
        except Exception:  # a program this client does not know: it runs where its workers have it, on CPU
            continue
        if protocol.runs_on_gpus(harness):
            keywords = {str(k).lower(): v for k, v in (entry["specification"].get("keywords") or {}).items()}
            devices[mc] = str(keywords.get("device", "cpu")).lower()
    return devices


def wants_gpus(plans: Sequence[Plan]) -> bool:
    """Whether any model chemistry of the run may run on a GPU (``gpu`` or ``auto``)."""
    return any(device != "cpu" for plan in plans for device in device_of(plan).values())


def needs_gpus(plans: Sequence[Plan]) -> bool:
    """Whether a model chemistry of the run must run on a GPU (``gpu``, for fragments a GPU can run)."""
    return any(_asked_for_gpu(plan) for plan in plans)


def _asked_for_gpu(plan: Plan) -> set[str]:
    """The model chemistries with device ``gpu`` that have a fragment a GPU can run (those whose every fragment
    falls back to CPU, such as CCSD(T), need no GPU)."""
    devices = device_of(plan)
    why_not = unsupported_on_gpu(plan)
    return {
        task.model_chemistry
        for task in plan.tasks
        if devices.get(task.model_chemistry) == "gpu" and why_not(task) is None
    }


def on_cpu_for_sure(plan: Plan, auto_too: bool = False) -> list:
    """The tasks that will run on a CPU whatever the cluster: all but those of model chemistries with device
    ``gpu`` (and ``auto``, with ``auto_too``) that a GPU can run."""
    devices = device_of(plan)
    maybe = {"gpu", "auto"} if auto_too else {"gpu"}
    if not maybe & set(devices.values()):
        return plan.tasks
    why_not = unsupported_on_gpu(plan)
    return [t for t in plan.tasks if devices.get(t.model_chemistry) not in maybe or why_not(t) is not None]


def unsupported_on_gpu(plan: Plan) -> Callable[[object], str | None]:
    """task -> why its program cannot run it on a GPU (a method, driver or option gpu4pyscf lacks), or None;
    asked once per model chemistry and driver."""
    import qcengine

    answers: dict[tuple[str, str], str | None] = {}
    embedded = plan.embedding_charges is not None

    def why_not(task) -> str | None:
        asked = (task.model_chemistry, task.driver)
        if asked not in answers:
            entry = plan.specifications[task.model_chemistry]
            spec = entry["specification"]
            harness = qcengine.get_program(entry["program"], check=False)
            answers[asked] = protocol.gpu_unsupported(
                harness, spec["model"]["method"], task.driver, spec.get("keywords") or {}, embedded
            )
        return answers[asked]

    return why_not


def placement(plan: Plan, session, processes_per_gpu: int, store_root) -> Placement | None:
    """Where each fragment of ``plan`` runs on ``session``'s workers: :func:`placements` of one plan."""
    return placements([plan], session, processes_per_gpu, store_root)[0]


def placements(plans: Sequence[Plan], session, processes_per_gpu: int, store_root) -> list[Placement | None]:
    """Where each fragment of each plan runs on ``session``'s workers, the plans placed one after another on the
    same workers (each sees what the ones before it placed); None for a plan whose every fragment stays as its
    keywords say (all on CPU, or the in-process executor, whose one process runs what the keywords ask).

    Refuses (:class:`~qcmb_dask.errors.InvalidInput`), before anything is submitted, a GPU the run cannot use: no
    GPU worker for a model chemistry that asks for ``gpu``, or a GPU worker (this process, in process) whose
    program cannot use its GPU (gpu4pyscf not installed: the message names the package for its CUDA version)."""
    client = session.client
    answers: dict[str, str | None] = {}  # program -> why it cannot use a GPU: asked once per run
    if client is None:
        for plan in plans:
            _refuse_unusable_gpus(plan, _asked_for_gpu(plan), _asking_once(answers, _unavailable_here), "this process")
        return [None] * len(plans)
    gpu_workers = session.gpu_workers
    total = int(session.resources.n_workers)
    workers = Workers(
        cpu=max(0, total - gpu_workers),
        gpu=gpu_workers,
        threads=session.resources.threads_per_task,
        processes_per_gpu=processes_per_gpu,
        gpu_factor=cost_history.gpu_factor(store_root),
    )
    load = Load.idle(workers)
    worker = _a_gpu_worker(client) if gpu_workers else None

    def ask(program: str) -> str | None:
        from qcmb_dask.worker.gpu import program_unavailable

        return client.run(program_unavailable, program, workers=[worker])[worker]

    placed_plans: list[Placement | None] = []
    for plan in plans:
        devices = device_of(plan)
        if all(device == "cpu" for device in devices.values()):
            placed_plans.append(None)
            continue
        placed = place(plan.tasks, devices, workers, unsupported_on_gpu(plan), load)
        placed.cpu_restricted = bool(workers.cpu and workers.gpu and session.cpu_workers_declared)
        on_gpu = {task.model_chemistry for task in plan.tasks if placed.devices.get(task.label) == "gpu"}
        if on_gpu and worker is not None:  # batch workers may not have arrived yet: their fragments say it
            _refuse_unusable_gpus(plan, on_gpu, _asking_once(answers, ask), f"the GPU worker {worker}")
        placed_plans.append(placed)
    return placed_plans


def _asking_once(answers: dict, ask: Callable[[str], str | None]) -> Callable[[str], str | None]:
    def once(program: str) -> str | None:
        if program not in answers:
            answers[program] = ask(program)
        return answers[program]

    return once


def _refuse_unusable_gpus(plan: Plan, chemistries, unavailable: Callable[[str], str | None], where: str) -> None:
    from qcmb_dask.errors import InvalidInput

    for program in sorted({plan.specifications[mc]["program"] for mc in chemistries}):
        why = unavailable(program)
        if why:
            named = sorted(mc for mc in chemistries if plan.specifications[mc]["program"] == program)
            raise InvalidInput(
                f"model chemistr{'y' if len(named) == 1 else 'ies'} {', '.join(named)} would run on a GPU, but on "
                f"{where}: {why} Or set the keyword device to 'cpu'."
            )


def _unavailable_here(program: str) -> str | None:
    from qcmb_dask.worker.gpu import program_unavailable

    return program_unavailable(program)


def _a_gpu_worker(client) -> str | None:
    """The address of a worker that declares a GPU, or None (none has joined yet)."""
    from qcmb_dask import keys

    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    return next((addr for addr, w in workers.items() if (w.get("resources") or {}).get(keys.GPU_RESOURCE)), None)
