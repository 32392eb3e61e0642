"""Warm a worker up for the programs a run uses: import them before the first fragment arrives.

Called on every worker of a cluster qcmb_dask starts, right after it starts and again when a later run uses
another program. A fragment then starts computing at once; only the programs the run uses are imported
(no PySCF for an NWChem run).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

#: QCEngine fills its description of the machine in several steps, unlocked: one thread at a time here.
_PRIMING = threading.Lock()
_STARTED = threading.Event()
_PRIMED = threading.Event()


def prime_qcengine() -> None:
    """QCEngine describes the machine once per process, at its first calculation, and that takes about a second
    (py-cpuinfo starts a subprocess): done early in a thread, it overlaps with planning. Whatever runs a
    calculation in this process calls this first: it returns once the description is whole (several threads of
    one worker starting their first calculations at once would each find it half-filled)."""
    if _PRIMED.is_set():
        return
    import qcengine.config

    from qcmb_dask import compat

    with _PRIMING:
        compat.describe_machine_quickly() or qcengine.config.get_global()
    _PRIMED.set()


def prime_in_background() -> None:
    """Start :func:`prime_qcengine` in a thread, once per process."""
    if not _STARTED.is_set():
        _STARTED.set()
        threading.Thread(target=prime_qcengine, name="qcmb-dask-prime-qcengine", daemon=True).start()


def import_programs(programs: Sequence[str]) -> list:
    """Import the run's harnesses and what they load (their ``get_version`` imports the program's module)."""
    import qcengine

    prime_qcengine()
    import qcmb_dask.worker.fragment  # noqa: F401  what every fragment task unpickles
    from qcmb_dask.programs import register_shipped

    register_shipped()
    ready = []
    for name in programs:
        try:
            qcengine.get_program(name).get_version()
        except Exception:  # noqa: BLE001  not here, or broken: the fragment says so, in its own words
            continue
        ready.append(name)
    return ready
