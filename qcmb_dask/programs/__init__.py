"""QCEngine program harnesses shipped with qcmb_dask, and their registration."""

from __future__ import annotations

from collections.abc import Iterable

import qcengine

from qcmb_dask import compat

from .pyscf import PySCFHarness
from .tblite import TBLiteHarness

#: How to get the QC programs users ask for; QCEngine's overview lists the rest.
INSTALL_HINTS = {
    "pyscf": "pip install pyscf (installed with qcmb_dask, which ships its QCEngine harness)",
    "nwchem": "apt-get install nwchem (Debian/Ubuntu), your site's module, or conda install -c conda-forge nwchem; "
    "and pip install networkx",
    "psi4": "conda install -c conda-forge psi4",
    "tblite": "pip install tblite (GFN2-xTB, GFN1-xTB; qcmb_dask ships its QCEngine harness)",
    "xtb": "conda install -c conda-forge xtb-python (or method gfn2-xtb with program tblite, from pip)",
    "cfour": "a licensed CFOUR install with xcfour on PATH",
    "gamess": "a GAMESS install with rungms on PATH",
    "mrchem": "conda install -c conda-forge mrchem",
    "terachem": "a TeraChem install with terachem on PATH",
    "qchem": "a licensed Q-Chem install with qchem on PATH",
}
PROGRAMS_OVERVIEW = "https://molssi.github.io/QCEngine/program_overview.html"


def register(harnesses: Iterable) -> None:
    """Register harnesses with QCEngine in this process; one already registered under the name is replaced.

    Replacing (rather than refusing) lets a user's own harness take over a name, and makes
    registering the same harnesses twice in one worker harmless.
    """
    register_shipped()
    for harness in harnesses:
        name = harness.name.lower()
        if name in qcengine.list_all_programs():
            if compat.registered_harness(name) is harness:
                continue
            qcengine.unregister_program(name)
        qcengine.register_program(harness)


def register_shipped() -> None:
    """Register the programs qcmb_dask ships, unless the user already registered their own under the name.

    Explicit, not a side effect of ``import qcmb_dask``: ``compute`` and ``plan`` call it here, and every
    fragment calls it on its worker before it asks QCEngine for its program. To use the PySCF harness on its
    own: ``qcmb_dask.programs.register_shipped()``, then ``qcengine.compute(atomic_input, "pyscf")``.
    """
    registered = qcengine.list_all_programs()
    for name, harness in (("pyscf", PySCFHarness), ("tblite", TBLiteHarness)):
        if name not in registered:
            qcengine.register_program(harness())


__all__ = ["INSTALL_HINTS", "PROGRAMS_OVERVIEW", "PySCFHarness", "TBLiteHarness", "register", "register_shipped"]
