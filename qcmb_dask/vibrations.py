"""Harmonic frequencies from a many-body Hessian: ``qcmb_dask.frequencies(result)`` (pure numpy).

The Hessian is mass-weighted with the molecule's own masses, translations and (for a non-linear molecule) the
three rotations about the centre of mass are projected out, and the rest is diagonalized: ``3N - 6`` modes
(``3N - 5`` for a linear molecule). An imaginary frequency is given as a negative wavenumber, as most programs
print it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: singular values below this (relative to the largest) mark a rotation a linear molecule does not have
LINEAR_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Frequencies:
    """Harmonic analysis of one Hessian."""

    #: wavenumbers in cm^-1, ascending; negative: imaginary
    wavenumbers: np.ndarray
    #: Cartesian displacement of each mode (3N x modes, columns normalized)
    modes: np.ndarray
    #: mass-weighted force constants (eigenvalues) in Eh / (bohr^2 amu)
    force_constants: np.ndarray

    def __len__(self) -> int:
        return len(self.wavenumbers)

    def table(self) -> str:
        """The frequency table, one mode per line."""
        lines = ["  mode   wavenumber / cm^-1"]
        for number, value in enumerate(self.wavenumbers, start=1):
            note = "  (imaginary)" if value < 0 else ""
            lines.append(f"  {number:4d}   {value:12.2f}{note}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def frequencies(result=None, *, molecule=None, hessian=None) -> Frequencies:
    """Harmonic frequencies of a ``driver="hessian"`` result (a ManyBodyResult, v1 or v2, or its dict or saved
    JSON), or of ``molecule`` (QCElemental) and ``hessian`` (Eh/bohr^2, 3N x 3N) given apart."""
    if result is not None:
        molecule, hessian = _from_result(result)
    if molecule is None or hessian is None:
        raise ValueError("frequencies: give a Hessian result, or molecule= and hessian=.")
    geometry = np.asarray(molecule.geometry, dtype=float).reshape(-1, 3)
    masses = np.asarray(molecule.masses, dtype=float)
    return harmonic(geometry, masses, np.asarray(hessian, dtype=float))


def harmonic(geometry: np.ndarray, masses: np.ndarray, hessian: np.ndarray) -> Frequencies:
    """The analysis itself: ``geometry`` in bohr (N x 3), ``masses`` in amu, ``hessian`` in Eh/bohr^2 (3N x 3N)."""
    natom = len(masses)
    if hessian.shape != (3 * natom, 3 * natom):
        raise ValueError(f"frequencies: a Hessian of shape {hessian.shape} for {natom} atoms (expected 3N x 3N).")
    root = np.repeat(np.sqrt(masses), 3)
    weighted = hessian / np.outer(root, root)
    weighted = (weighted + weighted.T) / 2
    internal = _internal_space(geometry, masses)
    constants, vectors = np.linalg.eigh(internal.T @ weighted @ internal)
    modes = (internal @ vectors) / root[:, None]  # back to Cartesian displacements
    modes /= np.linalg.norm(modes, axis=0)
    return Frequencies(_wavenumbers(constants), modes, constants)


def _internal_space(geometry: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """An orthonormal basis (mass-weighted, 3N x 3N-6 or 3N-5) orthogonal to translations and rotations."""
    natom = len(masses)
    centred = geometry - masses @ geometry / masses.sum()
    root = np.sqrt(masses)
    rigid = []
    for axis in range(3):
        translation = np.zeros((natom, 3))
        translation[:, axis] = root
        rigid.append(translation.ravel())
    for axis in range(3):
        unit = np.zeros(3)
        unit[axis] = 1.0
        rigid.append((np.cross(unit, centred) * root[:, None]).ravel())
    u, singular, _ = np.linalg.svd(np.array(rigid).T, full_matrices=True)
    rank = int(np.sum(singular > LINEAR_TOLERANCE * singular.max()))
    return u[:, rank:]


def _wavenumbers(constants: np.ndarray) -> np.ndarray:
    """Eigenvalues in Eh/(bohr^2 amu) -> cm^-1 (negative for negative eigenvalues)."""
    from qcelemental import constants as qc

    bohr = qc.bohr2angstroms * 1e-10
    to_angular_frequency = np.sqrt(qc.hartree2J / (qc.amu2kg * bohr**2))  # sqrt(Eh/(amu bohr^2)) in 1/s
    per_cm = to_angular_frequency / (2 * np.pi * qc.c * 100)
    return np.sign(constants) * np.sqrt(np.abs(constants)) * per_cm


def _from_result(result):
    """(molecule, Hessian) of a ManyBodyResult, its dict, or a saved JSON file."""
    import json
    from pathlib import Path

    from qcelemental.models.v2 import Molecule

    if isinstance(result, (str, Path)):
        from qcmb_dask.errors import InputFileMissing, InvalidArgument

        path = Path(result)
        if not path.is_file():
            raise InputFileMissing(f"frequencies: no result file {str(path)!r} (a Hessian result saved by run --out).")
        try:
            result = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise InvalidArgument(f"frequencies: {str(path)!r} is not a saved result (JSON): {err}") from None
    if isinstance(result, dict):
        data = result
        molecule = Molecule(**(data.get("input_data") or {}).get("molecule") or data["molecule"])
        hessian = data.get("return_result")
        driver = ((data.get("input_data") or {}).get("specification") or {}).get("driver")
    else:
        input_data = getattr(result, "input_data", None)
        molecule = getattr(input_data, "molecule", None) or getattr(result, "molecule", None)
        hessian = getattr(result, "return_result", None)  # a PartialResult has none
        driver = getattr(getattr(input_data, "specification", None), "driver", None)
    driver = getattr(driver, "value", driver)
    size = 3 * len(molecule.symbols) if molecule is not None else -1
    if driver in (None, "hessian") and np.size(hessian) == size * size:
        return molecule, np.asarray(hessian, dtype=float).reshape(size, size)  # JSON keeps it flat
    raise ValueError(
        f"frequencies: this result is of driver {driver!r}; frequencies need a Hessian: run the input with "
        'driver="hessian".'
    )
