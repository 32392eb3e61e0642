"""The cheapest calculation of each model chemistry, run here once before the graph is submitted.

A keyword a program refuses fails every fragment of its model chemistry; found by a harness's own
``check_request`` while planning where it has one (the shipped PySCF harness does), and otherwise here: the
cheapest calculation of that model chemistry runs in this process, its result kept in the result store (the
graph then reads it back instead of computing it twice), and a failure every fragment would share refuses the
run before anything is submitted. Client side; runs only where the programs are installed in this process.
"""

from __future__ import annotations

import dataclasses

from qcmb_dask.errors import InvalidArgument, InvalidInput
from qcmb_dask.options import setting

#: settings of ``qcmb_dask.preflight``
MODES = ("auto", "always", "never")


def check(plan, store_root, on_error: str = "raise", announce=None) -> None:
    """Run the cheapest calculation of each model chemistry that needs a preflight (see :func:`needs_preflight`)
    and refuse the run when one fails as every fragment of it would."""
    import qcengine

    from qcmb_dask.clusters.resources import machine_cores
    from qcmb_dask.graph import fragment_job
    from qcmb_dask.planning import derivatives
    from qcmb_dask.qcmanybody_adapter import prepare_parent
    from qcmb_dask.worker.fragment import FragmentFailure, RunPolicy, calculate

    mode = _mode()
    if mode == "never":
        return
    limit = float(setting("preflight-seconds", 60))
    cheapest = {}
    for task in plan.tasks:
        if task.cost <= limit and task.cost < getattr(cheapest.get(task.model_chemistry), "cost", float("inf")):
            cheapest[task.model_chemistry] = task
    differentiated = derivatives.of_plan(plan)
    parent = None
    policy = RunPolicy(str(store_root) if store_root else None)
    cores = machine_cores()
    for mc, task in cheapest.items():
        harness = qcengine.get_program(task.program.lower(), check=False)
        if not harness.found() or (mode == "auto" and not needs_preflight(harness)):
            continue
        job = fragment_job(plan, task, {"ncores": cores}, policy, label=f"{task.label} (preflight)")
        if mc in differentiated:  # run as gradients: the first of its Hessian's gradients
            job = dataclasses.replace(job, specification={**job.specification, "driver": "gradient"})
        if announce is not None:
            announce(f"qcmb_dask: preflight: {task.program} {_model(job)} on {task.label} (the cheapest of {mc!r})")
        parent = parent if parent is not None else prepare_parent(plan.input.model.molecule)
        outcome = calculate(parent, job)
        if isinstance(outcome, FragmentFailure) and refuses(outcome.error.error_type, on_error):
            error = outcome.error
            where = (
                f" The program's input and whole output: {error.record} (qcmb-dask failures --show '{task.label}')."
                if error.record
                else ""
            )
            raise InvalidInput(
                f"model chemistry {mc!r} ({task.program} {_model(job)}): its cheapest calculation, {task.label}, "
                f"failed before anything was submitted, so every one of its {_count(plan, mc)} calculation(s) would: "
                f"{error.error_type}: {error.reason}.{where} Change its keywords (or method, basis) and run again; "
                "nothing else was computed."
            )


def needs_preflight(harness) -> bool:
    """``auto``: a harness that checks requests itself (``check_request``, :mod:`qcmb_dask.programs.protocol`)
    has already said what it refuses; any other is asked by running its cheapest calculation."""
    from qcmb_dask.programs.protocol import ChecksRequests

    return not isinstance(harness, ChecksRequests)


def refuses(error_type: str, on_error: str) -> bool:
    """Whether a preflight failure of this kind refuses the run: never a random (transient) error, which a retry
    may cure; with ``on_error="partial"`` only an input error, since the lower levels may still be worth having."""
    if error_type == "random_error":
        return False
    return error_type == "input_error" if on_error == "partial" else True


def _mode() -> str:
    mode = setting("preflight", "auto")
    if mode is True:
        return "always"
    if mode is False:
        return "never"
    if mode not in MODES:
        raise InvalidArgument(f"qcmb_dask.preflight={mode!r}: expected one of {', '.join(MODES)}.")
    return mode


def _model(job) -> str:
    model = job.specification.get("model", {})
    return f"{model.get('method')}/{model.get('basis')}"


def _count(plan, mc: str) -> int:
    return sum(1 for t in plan.tasks if t.model_chemistry == mc)
