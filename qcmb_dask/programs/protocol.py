"""What a QCEngine ``ProgramHarness`` may add for qcmb_dask: nine optional members, each used where present.

Any QCEngine harness runs under qcmb_dask as it is (``compute(..., harnesses=[MyHarness()])`` registers it on
every worker). A harness of your own can do more by defining any of these; the shipped PySCF harness
(:class:`qcmb_dask.programs.pyscf.PySCFHarness`) defines the first eight.

- ``check_request(method, basis, driver, keywords, embedded, elements)``: called while planning, for every
  model chemistry, before anything is submitted. Raise ``qcengine.exceptions.InputError`` with a message for
  the user for what the program cannot run (an unknown method, a driver it has no derivatives for, a basis
  missing for an element, an unknown keyword). Its words become the ``InvalidInput`` the user sees.
- ``store_fingerprint()``: anything JSON can hold that changes when what the harness adds to a calculation
  changes (its keyword defaults, how it calls the program). It enters every result's key in the store, so
  an upgrade that changes a default recomputes instead of serving old numbers. Without it, QCEngine's
  version stands in.
- ``store_keywords(method, keywords)``: the keywords that decide the number, for the result store's key. Drop
  those that only choose how or where it runs (PySCF's ``device``), add markers where the same keywords now give
  a different number than before. Without it, all keywords enter the key as given.
- ``devices``: the devices its keyword ``device`` may name, e.g. ``("cpu", "gpu")``; a harness with ``"gpu"``
  has its fragments placed on GPU workers or CPU workers by qcmb_dask (:mod:`qcmb_dask.planning.placement`), and
  is told where by that keyword (``"cpu"`` or ``"gpu"``). With it, ``gpu_unsupported(method, driver, keywords,
  embedded)``: why a GPU cannot run such a calculation (a method or driver the GPU code lacks), or None; and
  ``gpu_unavailable()``: why this process cannot use a GPU at all (none visible, the GPU code not installed),
  or None; asked on a GPU worker before a run's fragments are submitted.
- ``escalation_keywords``: a dict of keywords for one more try after a ``convergence_error``, used when the
  run asks for it (``compute(..., escalate=True)``), e.g. ``{"max_cycle": 200, "level_shift": 0.2}``.
- ``analytic_hessian(method, keywords)``: False where the program has gradients but no Hessians of that method
  (PySCF's MP2 and CCSD): qcmb_dask then makes each fragment's Hessian from displaced gradients. A harness
  that does not say is taken to compute its Hessians itself.
- ``ghost_atoms = False``: the program cannot place basis functions on ghost atoms (tblite's GFN-xTB, whose
  basis belongs to its atoms): an expansion that needs them (counterpoise: ``cp``, ``vmfc``) is refused while
  planning, naming ``nocp``. A harness that does not say is taken to run them.

A GPU harness that runs out of a card's memory raises QCEngine's ``ResourceError`` with a message starting with
:data:`GPU_OUT_OF_MEMORY`; qcmb_dask runs the calculation again inside :func:`alone_on_the_gpu` (the harness
then keeps the card's other processes waiting: :data:`ALONE`), or on the CPU (``qcmb_dask.gpu.out-of-memory``).

A harness without ``check_request`` is checked by running: the cheapest calculation of each of its model
chemistries runs once before the graph is submitted (:mod:`qcmb_dask.preflight`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, runtime_checkable

#: A GPU calculation that ran out of the card's memory fails with QCEngine's ``resource_error`` and a message
#: that starts with this: qcmb_dask then runs it again inside :func:`alone_on_the_gpu`, or on the CPU.
GPU_OUT_OF_MEMORY = "GPU out of memory"

#: Set by :func:`alone_on_the_gpu`: a harness that shares cards between processes runs this calculation with its
#: card to itself (the others on the card wait).
ALONE: contextvars.ContextVar[bool] = contextvars.ContextVar("qcmb_dask_gpu_alone", default=False)


@contextmanager
def alone_on_the_gpu() -> Iterator[None]:
    """GPU calculations run inside this have their card to themselves (a retry after running out of its memory)."""
    token = ALONE.set(True)
    try:
        yield
    finally:
        ALONE.reset(token)


@runtime_checkable
class ChecksRequests(Protocol):
    def check_request(
        self, method: str, basis: str, driver: str, keywords: dict, embedded: bool, elements: Sequence[str]
    ) -> None: ...


@runtime_checkable
class FingerprintsResults(Protocol):
    def store_fingerprint(self) -> Any: ...


@runtime_checkable
class StoresKeywords(Protocol):
    def store_keywords(self, method: str, keywords: dict) -> dict: ...


def store_keywords(harness, method: str, keywords: dict) -> dict:
    """The keywords of a calculation as the result store keys them: the harness's say, else all of them."""
    ask = getattr(harness, "store_keywords", None)
    return dict(keywords) if ask is None else ask(method, keywords)


def runs_on_gpus(harness) -> bool:
    """Whether the harness can run calculations on a GPU (its ``devices`` name one)."""
    return "gpu" in tuple(getattr(harness, "devices", ()) or ())


def gpu_unavailable(harness) -> str | None:
    """Why this process cannot run the harness's calculations on a GPU (no GPU, its GPU code not installed), or
    None (a harness that does not say can)."""
    ask = getattr(harness, "gpu_unavailable", None)
    return None if ask is None else ask()


def gpu_unsupported(harness, method: str, driver: str, keywords: dict, embedded: bool) -> str | None:
    """Why the harness cannot run this calculation on a GPU, or None (a harness that does not say can)."""
    ask = getattr(harness, "gpu_unsupported", None)
    return None if ask is None else ask(method, driver, keywords, embedded)


def escalation_keywords(harness) -> dict | None:
    """The harness's ``escalation_keywords``, or None where it has none."""
    return getattr(harness, "escalation_keywords", None)


def analytic_hessian(harness, method: str, keywords: dict) -> bool:
    """Whether the harness computes Hessians of ``method`` itself (True for harnesses that do not say)."""
    ask = getattr(harness, "analytic_hessian", None)
    return True if ask is None else bool(ask(method, keywords))
