"""Deterministic water clusters and many-body inputs of any size, for the benchmarks."""

from __future__ import annotations

import numpy as np

BOHR_PER_ANGSTROM = 1 / 0.52917721067
# One water (Angstrom), O at the origin.
WATER = np.array([[0.0, 0.0, 0.0], [0.0, 0.7572, 0.5865], [0.0, -0.7572, 0.5865]])


def water_cluster(nwaters: int, spacing: float = 2.9, seed: int = 7, fragment_charges: bool = True) -> dict:
    """``nwaters`` waters on a cubic grid ``spacing`` Angstrom apart, randomly rotated (seeded), as a molecule dict."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(nwaters ** (1 / 3)))
    coords = []
    for i in range(nwaters):
        centre = spacing * np.array([i % side, (i // side) % side, i // side**2], dtype=float)
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        coords.append(WATER @ q.T + centre)
    geometry = (np.concatenate(coords) * BOHR_PER_ANGSTROM).ravel().tolist()
    mol = {
        "symbols": ["O", "H", "H"] * nwaters,
        "geometry": geometry,
        "fragments": [[3 * i, 3 * i + 1, 3 * i + 2] for i in range(nwaters)],
        "molecular_charge": 0,
    }
    if fragment_charges:
        mol["fragment_charges"] = [0] * nwaters
        mol["fragment_multiplicities"] = [1] * nwaters
    return mol


def mbe_input(
    nwaters: int,
    max_nbody: int,
    bsse_type="cp",
    method="hf",
    basis="sto-3g",
    program="pyscf",
    driver="energy",
    levels=None,
    specs=None,
    fragment_charges: bool = True,
) -> dict:
    """A v2 ManyBodyInput dict for a water cluster."""
    specs = specs or {"(auto)": (method, basis)}
    keywords = {"bsse_type": bsse_type, "max_nbody": max_nbody}
    if levels:
        keywords["levels"] = levels
        keywords.pop("max_nbody")
    return {
        "molecule": water_cluster(nwaters, fragment_charges=fragment_charges),
        "specification": {
            "driver": driver,
            "keywords": keywords,
            "specification": {
                name: {"program": program, "driver": driver, "model": {"method": m, "basis": b}, "keywords": {}}
                for name, (m, b) in specs.items()
            },
        },
    }
