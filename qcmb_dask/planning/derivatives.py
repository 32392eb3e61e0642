"""Which model chemistries of a Hessian run get their fragment Hessians from displaced gradients.

A program that can differentiate a method only once (PySCF's MP2 and CCSD) says so through its harness
(``analytic_hessian``, :mod:`qcmb_dask.programs.protocol`). Each fragment's Hessian is then built from its
gradients at every Cartesian coordinate displaced by +/- ``qcmb_dask.finite-difference-step`` bohr (central
differences), every displaced gradient its own task (:mod:`qcmb_dask.worker.displaced`); QCManyBody's analysis
takes the Hessians as it takes a program's own.
"""

from __future__ import annotations

from collections.abc import Mapping


def by_differences(specifications: Mapping[str, dict], driver: str) -> frozenset[str]:
    """The model chemistries (of a plan's ``specifications``) whose Hessians come from differences of gradients."""
    if driver != "hessian":
        return frozenset()
    if hessians() == "gradients":
        return frozenset(specifications)
    import qcengine

    from qcmb_dask.programs import register_shipped
    from qcmb_dask.programs.protocol import analytic_hessian

    register_shipped()
    known = set(qcengine.list_all_programs())
    chosen = set()
    for name, spec in specifications.items():
        program = spec["program"].lower()
        if program not in known:
            continue  # the plan's checks name an unknown program
        atomic = spec["specification"]
        harness = qcengine.get_program(program, check=False)
        try:
            if not analytic_hessian(harness, atomic["model"]["method"], atomic.get("keywords", {})):
                chosen.add(name)
        except Exception:  # an unknown method: the harness's check_request says so in its own words
            continue
    return frozenset(chosen)


def of_plan(plan) -> frozenset[str]:
    """:func:`by_differences` for a plan, or :class:`~qcmb_dask.errors.InvalidInput` where its protocols ask for
    what such fragments cannot give (called before anything is submitted, and again where the graph is built)."""
    from qcmb_dask.errors import InvalidInput

    chosen = by_differences(plan.specifications, plan.driver)
    if chosen and plan.input.model.specification.protocols.cluster_results.value == "all":
        raise InvalidInput(
            f"cluster_results='all' with Hessians from differences of gradients ({', '.join(sorted(chosen))}): each "
            "fragment is then 6N+1 gradient calculations, not one AtomicResult to keep. Leave "
            "protocols.cluster_results at its default."
        )
    if chosen:
        step()  # a bad setting is refused now too
    return chosen


def step() -> float:
    """The displacement in bohr (``qcmb_dask.finite-difference-step``)."""
    from qcmb_dask.errors import InvalidArgument
    from qcmb_dask.options import setting

    value = setting("finite-difference-step")
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = -1.0
    if not 1e-4 <= value <= 0.05:
        raise InvalidArgument(
            f"qcmb_dask.finite-difference-step={setting('finite-difference-step')!r}: expected bohr between 1e-4 "
            "and 0.05 (default 0.002)."
        )
    return value


def hessians() -> str:
    """``qcmb_dask.hessians``: ``"auto"`` or ``"gradients"``."""
    from qcmb_dask.errors import InvalidArgument
    from qcmb_dask.options import setting

    value = str(setting("hessians", "auto")).lower()
    if value not in ("auto", "gradients"):
        raise InvalidArgument(f"qcmb_dask.hessians={value!r}: expected 'auto' or 'gradients'.")
    return value
