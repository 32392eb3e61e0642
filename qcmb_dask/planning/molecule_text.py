"""Molecules the way chemists write them: a Psi4-style string (``--`` between fragments, ``units angstrom``) or an
``.xyz`` file with a fragmentation rule, turned into the QCSchema molecule dict (Bohr) that the rest reads.

QCElemental parses each fragment's lines (so atom lines, labels, ``charge multiplicity`` lines and units mean
what they mean to QCElemental and Psi4); charges and multiplicities a fragment does not give stay open and
are completed by :func:`qcmb_dask.planning.molecule.complete_charges`, as QCElemental would, but in
milliseconds rather than QCElemental's search over every fragment at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from qcmb_dask.errors import InvalidInput

#: lines that apply to the whole molecule, whichever fragment they are written in
_GLOBAL_LINE = re.compile(r"^\s*(units?\s|no_com|nocom|no_reorient|noreorient|symmetry\s|pubchem)", re.IGNORECASE)
_SEPARATOR = re.compile(r"^\s*--\s*$")


def from_psi4_string(text: str) -> dict:
    """A Psi4-style molecule string -> a QCSchema molecule dict in Bohr, one fragment per ``--``-separated block.

    Example::

        units angstrom
        0 1
        O  -1.551007  -0.114520   0.000000
        H  -1.934259   0.762503   0.000000
        H  -0.599677   0.040712   0.000000
        --
        O   1.350625   0.111469   0.000000
        ...
    """
    import qcelemental as qcel
    from qcelemental.exceptions import MoleculeFormatError, NotAnElementError, ValidationError

    lines = text.splitlines()
    global_lines = [line for line in lines if _GLOBAL_LINE.match(line)]
    blocks: list[list[str]] = [[]]
    for number, line in enumerate(lines, start=1):
        if _SEPARATOR.match(line):
            blocks.append([])
        elif line.strip() and not _GLOBAL_LINE.match(line) and not line.strip().startswith("#"):
            _check_string_line(line, number)
            blocks[-1].append(line)
    if len(blocks) < 2:
        raise InvalidInput(
            "molecule: the string has no '--' line; a many-body expansion needs fragments, separated by lines "
            "holding only '--' (Psi4's format)."
        )
    symbols, geometry, fragments, charges, multiplicities = [], [], [], [], []
    for k, block in enumerate(blocks):
        if not block:
            raise InvalidInput(f"molecule: fragment {k} (block {k + 1} between '--' lines) has no atoms.")
        try:
            record, parsed = qcel.molparse.from_string("\n".join(global_lines + block), return_processed=True)
        except (MoleculeFormatError, ValidationError, NotAnElementError) as err:
            raise InvalidInput(f"molecule: fragment {k} (block {k + 1} between '--' lines): {err.message}") from err
        qm = record["qm"]
        start = len(symbols)
        symbols.extend(str(s) for s in qm["elem"])
        geometry.extend(float(x) * _to_bohr(qm) for x in qm["geom"])
        fragments.append(list(range(start, len(symbols))))
        if not all(qm["real"]):
            raise InvalidInput(
                f"molecule: fragment {k} has ghost atoms (@ or Gh()); a many-body expansion places ghost atoms itself."
            )
        charges.append(parsed["fragment_charges"][0])
        multiplicities.append(parsed["fragment_multiplicities"][0])
    molecule = {"symbols": symbols, "geometry": geometry, "fragments": fragments}
    if any(c is not None for c in charges):
        molecule["fragment_charges"] = charges
    if any(m is not None for m in multiplicities):
        molecule["fragment_multiplicities"] = multiplicities
    if any(re.match(r"^\s*(no_com|nocom)", line, re.I) for line in global_lines):
        molecule["fix_com"] = True
    if any(re.match(r"^\s*(no_reorient|noreorient)", line, re.I) for line in global_lines):
        molecule["fix_orientation"] = True
    return molecule


def _check_string_line(line: str, number: int) -> None:
    """A fragment's line is ``charge multiplicity`` or a Cartesian atom ``Symbol x y z`` of finite numbers, read
    in full: QCElemental would take other shapes as a Z-matrix with variables (which this reader does not read)."""
    import math

    parts = line.split()
    if len(parts) == 2 and all(re.fullmatch(r"[-+]?\d+(\.\d*)?", p) for p in parts):
        return
    shape = "'Symbol x y z' (Cartesian, in the string's units) or 'charge multiplicity'"
    if len(parts) != 4:
        raise InvalidInput(f"molecule: line {number} {line.strip()!r} has {len(parts)} columns; expected {shape}.")
    try:
        finite = all(math.isfinite(float(x)) for x in parts[1:])
    except ValueError:
        finite = False
    if not finite:
        raise InvalidInput(
            f"molecule: line {number} {line.strip()!r}: x, y and z must be finite numbers (Z-matrices and variables "
            f"are not read); expected {shape}."
        )


def _to_bohr(qm: dict) -> float:
    from qcelemental import constants

    if qm.get("input_units_to_au"):
        return float(qm["input_units_to_au"])
    return 1.0 if qm["units"].lower() == "bohr" else 1.0 / constants.bohr2angstroms


def from_xyz(text: str, fragments: str | Sequence[Sequence[int]] = "auto", where: str = "the xyz file") -> dict:
    """An XYZ file's text (Angstrom) -> a QCSchema molecule dict in Bohr.

    ``fragments``: ``"auto"`` (default), one fragment per connected molecule (atoms bonded when closer than 1.2
    times the sum of their covalent radii); or atom ranges, 0-based and inclusive, as ``"0-2,3-5,6-8"`` or lists.
    """
    from qcelemental import constants

    lines = text.splitlines()
    first = lines[0].split() if lines else []
    if len(first) != 1 or not first[0].isdigit() or int(first[0]) == 0:
        shown = repr(lines[0]) if lines else "nothing"
        raise InvalidInput(f"{where}: line 1 must hold the number of atoms and nothing else (XYZ format), got {shown}.")
    natoms = int(first[0])
    atom_lines = lines[2 : 2 + natoms]
    if len(atom_lines) < natoms or any(not line.strip() for line in atom_lines):
        raise InvalidInput(f"{where}: the first line says {natoms} atoms, but fewer atom lines follow the comment.")
    rest = [line for line in lines[2 + natoms :] if line.strip()]
    if rest:
        raise InvalidInput(
            f"{where}: line {2 + natoms + 1} and more follow the {natoms} atoms the first line announces (a "
            "trajectory, or a wrong atom count?); give one structure per file, its atom count on line 1."
        )
    symbols, geometry = [], []
    for number, line in enumerate(atom_lines, start=3):
        symbol, xyz = _atom_line(line, f"{where}: line {number}")
        symbols.append(symbol)
        geometry.extend(x / constants.bohr2angstroms for x in xyz)
    if isinstance(fragments, str) and fragments.strip().lower() == "auto":
        groups = connected_fragments(symbols, geometry)
        _refuse_lone_hydrogens(groups, symbols, geometry, where)
    else:
        groups = atom_ranges(fragments) if isinstance(fragments, str) else [list(f) for f in fragments]
    return {"symbols": symbols, "geometry": geometry, "fragments": groups}


def _refuse_lone_hydrogens(groups, symbols, geometry_bohr, where: str) -> None:
    """A hydrogen bonded to nothing is a radical no cluster input means; a whole file of them is a file in Bohr."""
    import numpy as np

    lone = [atoms[0] for atoms in groups if len(atoms) == 1 and symbols[atoms[0]] == "H"]
    if not lone:
        return
    xyz = np.asarray(geometry_bohr).reshape(-1, 3)
    atom = lone[0]
    others = np.delete(np.arange(len(symbols)), atom)
    nearest = float(np.min(np.linalg.norm(xyz[others] - xyz[atom], axis=1))) if len(others) else float("inf")
    raise InvalidInput(
        f"{where}: hydrogen atom {atom} (line {atom + 3}) is bonded to no other atom (the nearest is "
        f"{nearest / 1.8897261246257702:.2f} Angstrom away), so fragments 'auto' would make it a fragment of its own"
        f"{f' ({len(lone)} such hydrogens)' if len(lone) > 1 else ''}. XYZ coordinates are in Angstrom: if these are "
        "in Bohr, divide them by 1.8897261; if that atom is meant to stand alone, give the fragments as atom ranges "
        "(--fragments 0-2,3-5)."
    )


def _atom_line(line: str, where: str) -> tuple[str, list[float]]:
    """``Symbol x y z`` (Angstrom) understood in full, or refused: a fifth column is never dropped (Gaussian's
    freeze flag ``O 0 x y z`` would otherwise shift every coordinate by one)."""
    import math

    from qcelemental import periodictable

    parts = line.split()
    shown = line.strip()
    if len(parts) != 4:
        hint = (
            " If the second column is a freeze flag (Gaussian: 0 or -1), remove that column."
            if len(parts) == 5 and re.fullmatch(r"-?\d+", parts[1])
            else ""
        )
        raise InvalidInput(
            f"{where} {shown!r} has {len(parts)} columns; an XYZ atom line has 4: 'Symbol x y z' (Angstrom).{hint}"
        )
    try:
        # an atomic number, or a symbol with a numbered label (O1, H12)
        symbol = periodictable.to_E(int(parts[0]) if parts[0].isdigit() else re.sub(r"\d+$", "", parts[0]))
    except Exception:  # qcelemental's NotAnElementError
        raise InvalidInput(f"{where} {shown!r}: {parts[0]!r} is not an element symbol (write e.g. O, H, Cl).") from None
    try:
        xyz = [float(x) for x in parts[1:]]
    except ValueError:
        raise InvalidInput(f"{where} {shown!r}: x, y and z must be numbers (Angstrom).") from None
    if not all(math.isfinite(x) for x in xyz):
        raise InvalidInput(f"{where} {shown!r}: x, y and z must be finite numbers (Angstrom).")
    return symbol, xyz


def connected_fragments(symbols: Sequence[str], geometry_bohr: Sequence[float], scale: float = 1.2) -> list[list[int]]:
    """Atoms in one fragment per connected molecule, fragments in order of their first atom."""
    import numpy as np
    from scipy.spatial import cKDTree

    from qcmb_dask.planning.distances import covalent_radius_bohr

    xyz = np.asarray(geometry_bohr, dtype=float).reshape(-1, 3)
    radii = np.array([covalent_radius_bohr(s) for s in symbols])
    parent = list(range(len(symbols)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in cKDTree(xyz).query_pairs(scale * 2 * radii.max()):
        if np.linalg.norm(xyz[i] - xyz[j]) < scale * (radii[i] + radii[j]):
            parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(symbols)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda atoms: atoms[0])


def atom_ranges(spec: str) -> list[list[int]]:
    """``"0-2,3-5,6"`` -> ``[[0, 1, 2], [3, 4, 5], [6]]`` (0-based, inclusive)."""
    groups = []
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise InvalidInput(
                f"fragments {spec!r}: expected 'auto' or 0-based inclusive atom ranges such as '0-2,3-5,6-8'."
            )
        first, last = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if last < first:
            raise InvalidInput(f"fragments {spec!r}: the range {part.strip()!r} ends before it starts.")
        groups.append(list(range(first, last + 1)))
    return groups
