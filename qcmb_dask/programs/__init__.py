"""QCEngine program harnesses shipped with qcmb_dask, and their registration."""

from __future__ import annotations

from typing import Iterable

import qcengine

from .pyscf import PySCFHarness


def register(harnesses: Iterable) -> None:
    """Register harnesses with QCEngine in this process; one already registered under the name is replaced.

    Replacing (rather than refusing) lets a user's own harness take over a name, and makes
    registering the same harnesses twice in one worker harmless.
    """
    for harness in harnesses:
        name = harness.name.lower()
        if name in qcengine.list_all_programs():
            if qcengine.programs.base.programs[name] is harness:
                continue
            qcengine.unregister_program(name)
        qcengine.register_program(harness)


def register_shipped() -> None:
    """Register the programs qcmb_dask ships, unless the user already registered their own under the name."""
    if "pyscf" not in qcengine.list_all_programs():
        qcengine.register_program(PySCFHarness())


__all__ = ["PySCFHarness", "register", "register_shipped"]
