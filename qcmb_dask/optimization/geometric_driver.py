"""geomeTRIC on a gradient function: the route QCEngine's ``geometric`` procedure takes, with our own engine.

QCEngine's procedure hands geomeTRIC a QCSchema single-point spec and lets it call ``qcengine.compute`` per
step; a many-body specification cannot travel that way (it has no QCSchema v1 form). Here geomeTRIC gets an
engine whose ``calc_new`` calls the function it is given, and the same internal coordinates and parameters
as in ``geometric.run_json``, so the steps are those QCEngine's procedure would take.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from qcmb_dask.errors import InvalidArgument

#: geomeTRIC's optimizer keywords (``geometric.params.OptParams`` and ``geometric.run_json``): anything else is
#: refused, since geomeTRIC itself ignores a misspelt keyword.
KEYWORDS = frozenset(
    {
        "bothre",
        "check",
        "constraints",
        "converge",
        "convergence_cmax",
        "convergence_dmax",
        "convergence_drms",
        "convergence_energy",
        "convergence_gmax",
        "convergence_grms",
        "convergence_molpro_dmax",
        "convergence_molpro_gmax",
        "convergence_set",
        "coordsys",
        "enforce",
        "epsilon",
        "hessian",
        "maxiter",
        "molcnv",
        "qccnv",
        "reset",
        "rigid",
        "subfrctor",
        "tmax",
        "tmin",
        "transition",
        "trust",
        "usedmax",
        "verbose",
    }
)

#: geomeTRIC keywords that are thresholds or step sizes: a zero, negative or non-finite one never converges
POSITIVE_NUMBERS = frozenset(
    {
        "convergence_energy",
        "convergence_grms",
        "convergence_gmax",
        "convergence_drms",
        "convergence_dmax",
        "convergence_cmax",
        "trust",
        "tmax",
        "tmin",
    }
)

#: what geomeTRIC's TRIC/DLC/Cartesian names build: (coordinate class name, connect fragments, add Cartesians)
COORDINATE_SYSTEMS = {
    "cart": ("CartesianCoordinates", False, False),
    "prim": ("PrimitiveInternalCoordinates", True, False),
    "dlc": ("DelocalizedInternalCoordinates", True, False),
    "hdlc": ("DelocalizedInternalCoordinates", False, True),
    "tric": ("DelocalizedInternalCoordinates", False, False),
}

Evaluate = Callable[[np.ndarray], tuple[float, np.ndarray]]


def check_keywords(keywords: dict[str, Any]) -> dict[str, Any]:
    """The keywords in geomeTRIC's spelling (lower case), or InvalidArgument naming the unknown ones."""
    lowered = {str(name).lower(): value for name, value in keywords.items()}
    unknown = sorted(set(lowered) - KEYWORDS)
    if unknown:
        raise InvalidArgument(
            f"geomeTRIC does not know the keyword(s) {unknown}; known: {', '.join(sorted(KEYWORDS))} "
            "(e.g. convergence_set='GAU_TIGHT', maxiter=100, coordsys='tric')."
        )
    if str(lowered.get("coordsys", "tric")).lower() not in COORDINATE_SYSTEMS:
        raise InvalidArgument(f"coordsys={lowered['coordsys']!r}: expected one of {sorted(COORDINATE_SYSTEMS)}.")
    maxiter = lowered.get("maxiter", 1)
    if isinstance(maxiter, bool) or not isinstance(maxiter, int) or maxiter < 1:
        raise InvalidArgument(f"maxiter={maxiter!r}: expected a whole number of optimization steps, at least 1.")
    for name in POSITIVE_NUMBERS & set(lowered):
        value = lowered[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise InvalidArgument(f"{name}={value!r}: expected a positive number (geomeTRIC's units: Eh, bohr).")
    if "scan" in (lowered.get("constraints") or {}):
        raise InvalidArgument("constraints: 'scan' is not supported (geomeTRIC's JSON interface refuses it too).")
    return lowered


def optimize(
    symbols: Sequence[str],
    coordinates: np.ndarray,
    evaluate: Evaluate,
    keywords: dict[str, Any],
    connectivity: Sequence | None = None,
) -> tuple[np.ndarray, str]:
    """Minimize with geomeTRIC from ``coordinates`` (bohr, natom x 3), ``evaluate(bohr) -> (energy, gradient)``
    called for every point geomeTRIC asks for. Returns the final coordinates (bohr) and geomeTRIC's log.

    Raises geomeTRIC's own errors (``GeomOptNotConvergedError`` after ``maxiter`` steps) and whatever
    ``evaluate`` raises.
    """
    import geometric.internal
    import geometric.optimize
    from geometric.molecule import Molecule as GeometricMolecule
    from geometric.nifty import ang2bohr, bohr2ang

    keywords = check_keywords(keywords)
    molecule = GeometricMolecule()
    molecule.elem = list(symbols)
    molecule.xyzs = [np.asarray(coordinates, dtype=float).reshape(-1, 3) * bohr2ang]
    if connectivity:
        molecule.Data["bonds"] = sorted((int(a), int(b)) for a, b, *_ in connectivity)
        molecule.built_bonds = True
    else:
        molecule.build_bonds()
    engine = _engine(molecule, evaluate)
    constraints, values = None, None
    if keywords.get("constraints"):
        from geometric.prepare import parse_constraints
        from geometric.run_json import make_constraints_string

        constraints, values = parse_constraints(molecule, make_constraints_string(keywords["constraints"]))
    class_name, connect, addcart = COORDINATE_SYSTEMS[str(keywords.get("coordsys", "tric")).lower()]
    internal = getattr(geometric.internal, class_name)(
        molecule,
        build=True,
        connect=connect,
        addcart=addcart,
        constraints=constraints,
        rigid=keywords.get("rigid", False),
        cvals=values[0] if values is not None else None,
    )
    params = geometric.optimize.OptParams(**keywords)
    start = molecule.xyzs[0].flatten() * ang2bohr
    with _captured_log() as log, tempfile.TemporaryDirectory(prefix="qcmb-dask-geometric-") as scratch:
        progress = geometric.optimize.Optimize(start, molecule, internal, engine, scratch, params)
    return np.asarray(progress.xyzs[-1]).reshape(-1, 3) * ang2bohr, log.getvalue()


def not_converged() -> type[Exception]:
    """geomeTRIC's error for an optimization that used its ``maxiter`` steps."""
    from geometric.errors import GeomOptNotConvergedError

    return GeomOptNotConvergedError


def _engine(molecule, evaluate: Evaluate):
    from geometric.engine import Engine

    class FunctionEngine(Engine):
        """geomeTRIC's engine interface around ``evaluate`` (no files, no cache: the result store is ours)."""

        def calc_new(self, coords, dirname):
            energy, gradient = evaluate(np.asarray(coords, dtype=float).reshape(-1, 3))
            return {"energy": float(energy), "gradient": np.asarray(gradient, dtype=float).ravel()}

        def calc(self, coords, dirname, **kwargs):
            return self.calc_new(coords, dirname)

        def detect_dft(self):
            return False

    return FunctionEngine(molecule)


@contextlib.contextmanager
def _captured_log():
    """geomeTRIC logs every step at INFO to its logger; kept for the result's stdout, not printed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.terminator = ""  # geomeTRIC's messages end in their own newlines
    geometric_logger = logging.getLogger("geometric")
    saved = geometric_logger.level, geometric_logger.propagate
    geometric_logger.addHandler(handler)
    geometric_logger.setLevel(logging.INFO)
    geometric_logger.propagate = False
    try:
        yield stream
    finally:
        geometric_logger.removeHandler(handler)
        geometric_logger.setLevel(saved[0])
        geometric_logger.propagate = saved[1]
