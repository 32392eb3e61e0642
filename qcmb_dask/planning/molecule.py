"""A molecule as a user wrote it (a dict): checked before QCElemental sees it, charges completed as QCElemental would.

QCElemental reports many mistakes in its own internal words ("dropped atoms! nat = 5 != 6", "index -1
is out of bounds") or not at all (NaN coordinates); :func:`check` names the field, the atom or the
fragment, and what to write instead. :func:`complete_charges` fills what QCElemental would fill, through
:mod:`qcmb_dask.chgmult`, so a large cluster costs milliseconds rather than QCElemental's exponential search.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence

from qcmb_dask.errors import InputWarning, InvalidInput
from qcmb_dask.planning.chgmult import ChargeMultiplicityError, fill


def check(molecule) -> None:
    """Every problem in a molecule dict that QCElemental would report obscurely, or not at all."""
    if not isinstance(molecule, dict):
        raise InvalidInput(f"molecule: expected an object with symbols, geometry and fragments, got {_kind(molecule)}.")
    if "units" in molecule:
        raise InvalidInput(
            "molecule.units: a QCSchema molecule has no units field; its geometry is in Bohr. Convert the coordinates "
            "(1 Angstrom = 1.8897 Bohr), or give the molecule as a string with 'units angstrom' and '--' between "
            "fragments (Psi4's format)."
        )
    symbols = _symbols(molecule)
    natoms = len(symbols)
    _check_geometry(molecule, symbols)
    _check_real(molecule, natoms)
    fragments = molecule.get("fragments")
    if fragments is None:
        raise InvalidInput(
            "molecule.fragments is missing: a many-body expansion needs the molecule split into fragments, a list "
            "of atom-index lists (e.g. [[0, 1, 2], [3, 4, 5]] for two waters)."
        )
    _check_masses(molecule, natoms)
    _check_fragments(fragments, symbols)
    if len(fragments) < 2:
        raise InvalidInput(
            f"molecule.fragments has {len(fragments)} fragment(s); a many-body expansion needs at least two "
            "fragments (e.g. [[0, 1, 2], [3, 4, 5]] for two waters)."
        )
    for field in ("fragment_charges", "fragment_multiplicities"):
        values = molecule.get(field)
        if values is not None and (not _is_list(values) or len(values) != len(fragments)):
            raise InvalidInput(
                f"molecule.{field}: expected one value per fragment ({len(fragments)}), got {_shown(values)}; "
                "use null for a value QCElemental should complete."
            )
    _check_charge_values(molecule)
    _check_multiplicity_values(molecule)


def complete_charges(molecule: dict) -> dict:
    """The molecule with every charge and multiplicity filled in exactly as QCElemental would fill them.

    Warns (:class:`~qcmb_dask.errors.InputWarning`) when that puts a charge, or more unpaired electrons
    than the fragment needs, on a fragment whose values were not given: QCElemental's rules choose the
    first fragments for them, which may not be what the user meant. Returns a new dict.
    """
    fragments = molecule.get("fragments") or []
    charges = _or_nones(molecule.get("fragment_charges"), len(fragments))
    multiplicities = _or_nones(molecule.get("fragment_multiplicities"), len(fragments))
    if len(fragments) < 2:
        return molecule
    electrons = _neutral_electrons(molecule)
    fragment_electrons = [[electrons[i] for i in atoms] for atoms in fragments]
    try:
        filled = fill(
            fragment_electrons,
            molecule.get("molecular_charge"),
            charges,
            molecule.get("molecular_multiplicity"),
            multiplicities,
        )
    except ChargeMultiplicityError as err:
        problems = _charge_problems(molecule, [sum(f) for f in fragment_electrons], charges, multiplicities)
        if problems:
            raise InvalidInput(
                f"molecule: the charges and multiplicities do not fit together: {'; '.join(problems)}."
            ) from err
        raise InvalidInput(f"molecule: {err}") from err
    if None not in charges and None not in multiplicities:
        return molecule  # all given, and consistent: QCElemental keeps them as they are
    _warn_about_choices(fragments, electrons, charges, multiplicities, filled)
    return {**molecule, **filled}


def _charge_problems(molecule: dict, electrons: list[float], charges: list, multiplicities: list) -> list[str]:
    """The given values that no completion can reconcile, named (empty where only the combination fails)."""
    problems = []
    for i, (charge, mult) in enumerate(zip(charges, multiplicities)):
        if charge is None or mult is None or float(mult) != int(mult):
            continue
        left = electrons[i] - charge
        if float(left) == int(left) and int(left) % 2 == int(mult) % 2:
            problems.append(
                f"fragment {i} (fragment_charges[{i}] = {charge:g}) has {left:g} electrons, "
                f"{'an even' if int(left) % 2 == 0 else 'an odd'} number, which cannot have multiplicity {mult:g} "
                f"(fragment_multiplicities[{i}]; {'1, 3, 5' if int(left) % 2 == 0 else '2, 4, 6'} ... can)"
            )
    total = molecule.get("molecular_charge")
    if total is not None and None not in charges and abs(sum(charges) - total) > 1e-6:
        problems.append(f"molecular_charge is {total:g} but fragment_charges add up to {sum(charges):g}")
    total_mult = molecule.get("molecular_multiplicity")
    if total is not None and total_mult is not None and float(total_mult) == int(total_mult):
        left = sum(electrons) - total
        if float(left) == int(left) and int(left) % 2 == int(total_mult) % 2:
            problems.append(
                f"the molecule (molecular_charge {total:g}) has {left:g} electrons, which cannot have "
                f"molecular_multiplicity {total_mult:g}"
            )
    return problems


def _warn_about_choices(fragments, electrons, charges, multiplicities, filled) -> None:
    chosen = []
    for i, atoms in enumerate(fragments):
        charge, mult = filled["fragment_charges"][i], filled["fragment_multiplicities"][i]
        lowest = 1 + round(sum(electrons[a] for a in atoms) - charge) % 2
        if charges[i] is None and charge != 0:
            chosen.append(f"fragment {i + 1} charge {charge:+g}")
        if multiplicities[i] is None and mult != lowest:
            chosen.append(f"fragment {i + 1} multiplicity {mult:g}")
    if chosen:
        warnings.warn(
            f"molecule: fragment charges or multiplicities were not given, and QCElemental's rules (which QCManyBody "
            f"uses too) chose: {', '.join(chosen)}. If that is not what you meant, give fragment_charges and "
            "fragment_multiplicities.",
            InputWarning,
            stacklevel=4,
        )


def _symbols(molecule: dict) -> list[str]:
    from qcelemental import periodictable

    symbols = molecule.get("symbols")
    if not _is_list(symbols) or len(symbols) == 0:
        raise InvalidInput(
            f'molecule.symbols: expected a list of element symbols (e.g. ["O", "H", "H"]), got {_shown(symbols)}.'
        )
    for i, symbol in enumerate(symbols):
        try:
            periodictable.to_Z(str(symbol))
        except Exception:  # qcelemental's NotAnElementError
            raise InvalidInput(
                f"molecule.symbols[{i}]: {symbol!r} is not an element symbol (write e.g. 'O', 'H', 'Cl')."
            ) from None
    return [str(s) for s in symbols]


def _check_geometry(molecule: dict, symbols: Sequence[str]) -> None:
    geometry = molecule.get("geometry")
    if geometry is None:
        raise InvalidInput(
            "molecule.geometry is missing: give the Cartesian coordinates in Bohr, 3 per atom "
            f"({3 * len(symbols)} numbers for {len(symbols)} atoms)."
        )
    flat = _flatten(geometry)
    if flat is None or len(flat) != 3 * len(symbols):
        count = "a non-list" if flat is None else f"{len(flat)} numbers"
        raise InvalidInput(
            f"molecule.geometry: {len(symbols)} atoms (in symbols) need {3 * len(symbols)} coordinates "
            f"(x, y, z each, in Bohr), got {count}."
        )
    for i, value in enumerate(flat):
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
            atom = i // 3
            raise InvalidInput(
                f"molecule.geometry: atom {atom} ({symbols[atom]}) has {'xyz'[i % 3]} = {value!r}; every coordinate "
                "must be a finite number (Bohr)."
            )


def _check_masses(molecule: dict, natoms: int) -> None:
    for field in ("masses", "atomic_numbers", "mass_numbers", "atom_labels"):
        values = molecule.get(field)
        if values is not None and (not _is_list(values) or len(values) != natoms):
            raise InvalidInput(f"molecule.{field}: expected one value per atom ({natoms}), got {_shown(values)}.")


def _check_charge_values(molecule: dict) -> None:
    """Charges are numbers (QCElemental would fail on "0" in arithmetic, not in words)."""
    named = [(f"fragment_charges[{i}]", c) for i, c in enumerate(molecule.get("fragment_charges") or [])]
    named.append(("molecular_charge", molecule.get("molecular_charge")))
    for name, value in named:
        if value is None:
            continue
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
            raise InvalidInput(
                f"molecule.{name} = {value!r}: a charge is a number, written without quotes (0, 1, -1); "
                "use null for one QCElemental should complete."
            )


def _check_multiplicity_values(molecule: dict) -> None:
    """A multiplicity is 2S + 1: a number of at least 1 (QCElemental accepts fractional ones)."""
    named = [(f"fragment_multiplicities[{i}]", m) for i, m in enumerate(molecule.get("fragment_multiplicities") or [])]
    named.append(("molecular_multiplicity", molecule.get("molecular_multiplicity")))
    for name, value in named:
        if value is None:
            continue
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 1 <= value < math.inf:
            raise InvalidInput(
                f"molecule.{name} = {value!r}: a multiplicity is 2S+1, at least 1 (1 singlet, 2 doublet, 3 triplet)."
            )


def _check_real(molecule: dict, natoms: int) -> None:
    real = molecule.get("real")
    if real is None:
        return
    if not _is_list(real) or len(real) != natoms:
        raise InvalidInput(f"molecule.real: expected one true/false per atom ({natoms}), got {_shown(real)}.")
    ghosts = [i for i, r in enumerate(real) if not r]
    if ghosts:
        raise InvalidInput(
            f"molecule.real: atoms {ghosts} are ghost atoms. A many-body expansion places ghost atoms itself, "
            "for each BSSE treatment (cp, vmfc); give every atom as real (drop 'real', or make it all true)."
        )


def _check_fragments(fragments, symbols: Sequence[str]) -> None:
    natoms = len(symbols)
    example = "e.g. [[0, 1, 2], [3, 4, 5]] for two waters"
    if not _is_list(fragments) or not all(_is_list(f) for f in fragments):
        raise InvalidInput(
            f"molecule.fragments: expected a list of atom-index lists ({example}), got {_shown(fragments)}."
        )
    seen = {}
    for k, atoms in enumerate(fragments):
        if len(atoms) == 0:
            raise InvalidInput(f"molecule.fragments[{k}] is empty: every fragment needs at least one atom ({example}).")
        for atom in atoms:
            if not isinstance(atom, numbers.Integral) or isinstance(atom, bool):
                raise InvalidInput(
                    f"molecule.fragments[{k}] holds {atom!r}: atom indices must be integers written without a "
                    f"decimal point or quotes (0, 1, 2; 0-based, in the order of symbols) ({example})."
                )
            if not 0 <= atom < natoms:
                raise InvalidInput(
                    f"molecule.fragments[{k}] names atom {atom!r}, but atoms are numbered 0 to {natoms - 1} "
                    f"(0-based, in the order of symbols)."
                )
            if atom in seen:
                raise InvalidInput(
                    f"molecule.fragments: atom {atom} ({symbols[atom]}) is in fragment {seen[atom]} and fragment {k}; "
                    "each atom belongs to exactly one fragment."
                )
            seen[atom] = k
    if fragments:
        missing = [i for i in range(natoms) if i not in seen]
        if missing:
            raise InvalidInput(
                f"molecule.fragments: atoms {missing} are in no fragment; each atom belongs to exactly one ({example})."
            )


def _neutral_electrons(molecule: dict) -> list[float]:
    from qcelemental import periodictable

    numbers = molecule.get("atomic_numbers")
    if numbers is None:
        numbers = [periodictable.to_Z(s) for s in molecule["symbols"]]
    real = molecule.get("real") or [True] * len(numbers)
    return [float(z) * bool(r) for z, r in zip(numbers, real)]


def _flatten(geometry):
    if hasattr(geometry, "tolist"):
        geometry = geometry.tolist()
    if not _is_list(geometry):
        return None
    flat = []
    for row in geometry:
        if hasattr(row, "tolist"):
            row = row.tolist()
        flat.extend(row if _is_list(row) else [row])
    return flat


def _or_nones(values, n: int) -> list:
    return [None] * n if values is None else list(values)


def _is_list(value) -> bool:
    return isinstance(value, (list, tuple)) or hasattr(value, "tolist")


def _kind(value) -> str:
    return "nothing" if value is None else type(value).__name__


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
