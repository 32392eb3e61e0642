"""Bad input is refused before anything is submitted, with a message that names the problem.

Two stages: :func:`normalized_input` turns the validation errors of QCElemental, QCManyBody and
pydantic into one :class:`InvalidInput` and adds the checks they lack (a single fragment,
duplicate model chemistries); :func:`check_programs` asks each QCEngine harness whether it exists,
is installed, and can run the method and driver asked of it. Neither runs a QC calculation.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable

from qcmb_dask.errors import InvalidInput


@contextlib.contextmanager
def input_errors():
    """Re-raise the validation errors of the model libraries as :class:`InvalidInput` naming the problem."""
    from pydantic import ValidationError
    from qcelemental.exceptions import ValidationError as MoleculeError

    try:
        yield
    except InvalidInput:
        raise
    except MoleculeError as err:  # atoms on top of each other, impossible charge/multiplicity
        raise InvalidInput(_molecule_problem(err.message)) from err
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in err.errors(include_url=False)
        )
        raise InvalidInput(problems) from err
    except FileNotFoundError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, StopIteration) as err:
        # What slips past the checks here, in the words of QCElemental or QCManyBody, but never a raw traceback.
        raise InvalidInput(f"{type(err).__name__} while reading it: {err}") from err


_CLOSE_PAIR = re.compile(r"\((?:np\.int64\()?(\d+)\)?, (?:np\.int64\()?(\d+)\)?, (?:np\.float64\()?([-+\d.eE]+)\)?\)")


def _molecule_problem(message: str) -> str:
    """QCElemental's molecule message, in the input's terms where it has its own (atoms too close)."""
    if "too close" in message:
        pairs = _CLOSE_PAIR.findall(message)
        if pairs:
            first, second, distance = pairs[0]
            more = f" (and {len(pairs) - 1} more pair(s))" if len(pairs) > 1 else ""
            return (
                f"molecule.geometry: atoms {first} and {second} are {float(distance):.3f} Bohr apart{more}, closer "
                "than any bond. Coordinates are in Bohr: if they are in Angstrom, multiply by 1.8897 or give the "
                "molecule as a string with 'units angstrom'."
            )
    return f"molecule: {message}"


def check_specification_dict(spec) -> None:
    """The parts of a ``specification`` dict that pydantic and QCManyBody report in their internals' words."""
    if not isinstance(spec, dict):
        raise InvalidInput(
            "specification: expected an object with keywords (bsse_type, max_nbody or levels), driver and "
            f"specification (one model chemistry per name), got {'nothing' if spec is None else type(spec).__name__}."
        )
    models = spec.get("specification")
    if not isinstance(models, dict) or not models:
        raise InvalidInput(
            'specification.specification: give at least one model chemistry, e.g. {"(auto)": {"program": "pyscf", '
            '"model": {"method": "hf", "basis": "6-31g"}, "driver": "energy"}}.'
        )
    keywords = spec.get("keywords") or {}
    if not isinstance(keywords, dict):
        raise InvalidInput(f"specification.keywords: expected an object, got {type(keywords).__name__}.")
    bsse = keywords.get("bsse_type")
    if bsse is not None:
        names = bsse if isinstance(bsse, (list, tuple)) else [bsse]
        if not names or not all(isinstance(b, str) for b in names):
            raise InvalidInput(
                f'specification.keywords.bsse_type: expected "cp", "nocp", "vmfc" or a list of them, got {bsse!r}.'
            )
    max_nbody = keywords.get("max_nbody")
    if max_nbody is not None and (isinstance(max_nbody, bool) or not isinstance(max_nbody, int) or max_nbody < 1):
        raise InvalidInput(
            f"specification.keywords.max_nbody: expected a whole number of at least 1 (the highest n-body order), "
            f"got {max_nbody!r}."
        )
    levels = keywords.get("levels")
    if levels is not None and (not isinstance(levels, dict) or not levels):
        raise InvalidInput(
            'specification.keywords.levels: expected n-body order -> model chemistry, e.g. {"1": "ccsd", "2": "mp2"}, '
            f"got {levels!r}."
        )


def check_fragmentation(model) -> None:
    """An MBE needs at least two fragments; QCManyBody's message for one fragment talks of none."""
    fragments = model.molecule.fragments or []
    if len(fragments) < 2:
        raise InvalidInput(
            f"the molecule has {len(fragments)} fragment(s); a many-body expansion needs at least two. Give "
            '"fragments": a list of atom-index lists, one per monomer (e.g. [[0, 1, 2], [3, 4, 5]] for two waters).'
        )


def check_model_fields(model) -> None:
    """QCElemental's ``Model`` keeps unknown keys: a misspelt ``basiss`` would leave the basis empty."""
    import difflib

    for name, spec in model.specification.specification.items():
        extra = spec.model.model_extra or {}
        for key in extra:
            known = list(type(spec.model).model_fields)
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise InvalidInput(
                f"specification.specification[{name!r}].model: unknown field {key!r}; {hint}a model has "
                f'{" and ".join(known)} (e.g. {{"method": "mp2", "basis": "cc-pvdz"}}).'
            )


def check_levels(model) -> None:
    """``keywords.levels`` keys are n-body orders 1 .. the number of fragments (or ``"supersystem"``); QCManyBody
    asserts deep in its analysis for any other."""
    levels = model.specification.keywords.levels
    if not levels:
        return
    nfragments = len(model.molecule.fragments or [])
    for key in levels:
        if key == "supersystem":
            continue
        if isinstance(key, bool) or not isinstance(key, int) or not 1 <= key <= nfragments:
            raise InvalidInput(
                f"specification.keywords.levels: key {key!r} is not an n-body order of this molecule; the keys are "
                f'whole numbers from 1 (monomers) to {nfragments} (its number of fragments), or "supersystem" '
                f'(e.g. {{"1": "ccsd", "2": "mp2"}}).'
            )


def check_levels_are_specified(levels: dict[int, str], specifications: dict[str, dict]) -> None:
    """Every model chemistry the levels name needs a specification (QCManyBody fails later with a KeyError).

    Without ``levels`` QCManyBody looks for one specification named ``"(auto)"``.
    """
    if not specifications:
        raise InvalidInput("specification.specification is empty: give at least one model chemistry.")
    missing = sorted(set(levels.values()) - set(specifications))
    if missing:
        named = ", ".join(repr(m) for m in missing)
        given = ", ".join(repr(s) for s in specifications)
        fix = (
            'name the specification "(auto)", or give keywords.levels (e.g. {"2": "'
            + next(iter(specifications))
            + '"})'
            if missing == ["(auto)"]
            else "add a specification under each of these names, or change keywords.levels"
        )
        raise InvalidInput(
            f"the n-body levels use model chemistry {named}, but the specification names only {given}: {fix}."
        )


def check_duplicate_model_chemistries(specifications: dict[str, dict]) -> None:
    """Two names for one model chemistry would compute every fragment twice, or mislabel levels."""
    from qcmb_dask.store import canonical_json

    seen: dict[str, str] = {}
    for name, spec in specifications.items():
        content = canonical_json({"program": spec["program"].lower(), **_comparable(spec["specification"])})
        if content in seen:
            raise InvalidInput(
                f"model chemistries {seen[content]!r} and {name!r} are the same calculation "
                f"({spec['program']} {spec['specification']['model']['method']}/"
                f"{spec['specification']['model']['basis']}): give each level a different one, or one name to both."
            )
        seen[content] = name


def _comparable(spec: dict) -> dict:
    model = spec.get("model", {})
    return {
        "method": str(model.get("method", "")).lower(),
        "basis": str(model.get("basis", "")).lower(),
        "keywords": spec.get("keywords", {}),
    }


def program_problems(requests: Iterable[tuple], installed: bool = True) -> list[str]:
    """Problems with :func:`plan_requests` requests, in the words users need.

    A harness that has a ``check_request(method, basis, driver, keywords, embedded, elements)`` method (the
    shipped PySCF one does) is asked whether it can run each request; it raises QCEngine's InputError if not.

    ``installed=False`` only asks QCEngine whether it knows the program (where the programs live on the
    workers, not here).
    """
    import qcengine

    from qcmb_dask.programs import INSTALL_HINTS, PROGRAMS_OVERVIEW, register_shipped
    from qcmb_dask.programs.protocol import ChecksRequests

    register_shipped()
    problems = []
    known = set(qcengine.list_all_programs())
    for program, method, basis, driver, keywords, embedded, elements, ghosts in requests:
        name = program.lower()
        hint = (
            f"{INSTALL_HINTS[name]} (see {PROGRAMS_OVERVIEW})" if name in INSTALL_HINTS else f"see {PROGRAMS_OVERVIEW}"
        )
        if name not in known:
            problems.append(
                f"program {program!r} is unknown to QCEngine (known: {', '.join(sorted(known))}); for a program "
                f"of your own, pass its harness: compute(..., harnesses=[MyHarness()])"
            )
            continue
        harness = qcengine.get_program(name, check=False)
        if installed and not harness.found():
            problems.append(f"program {program!r} is not installed here: {hint}")
            continue
        if ghosts and getattr(harness, "ghost_atoms", True) is False:
            problems.append(
                f"program {program!r} cannot run calculations with ghost atoms, which counterpoise (bsse_type 'cp' "
                "and 'vmfc') needs: use bsse_type 'nocp' with it, or another program"
            )
            continue
        if isinstance(harness, ChecksRequests) and harness.found():  # see qcmb_dask.programs.protocol
            try:
                harness.check_request(method, basis, driver, keywords, embedded, elements)
            except Exception as err:  # the harness's InputError, with its own words
                problems.append(str(err))
    return problems


def plan_requests(plan) -> list[tuple]:
    """(program, method, basis, driver, keywords, embedded, elements, ghosts) for every model chemistry of a plan;
    ``ghosts``: whether any of its calculations has ghost atoms."""
    from qcmb_dask.planning.derivatives import by_differences

    embedded = bool(plan.embedding_charges)
    elements = tuple(sorted({s.capitalize() for s in plan.input.model.molecule.symbols}))
    differentiated = by_differences(plan.specifications, plan.driver)  # those run gradients only
    ghosted = {task.model_chemistry for task in plan.tasks if len(task.basis) > len(task.real)}
    requests = []
    for name, spec in plan.specifications.items():
        model = spec["specification"]["model"]
        keywords = spec["specification"]["keywords"]
        driver = "gradient" if name in differentiated else plan.driver
        requests.append(
            (spec["program"], model["method"], model["basis"], driver, keywords, embedded, elements, name in ghosted)
        )
    return requests


def check_programs(requests: Iterable[tuple], installed: bool = True) -> None:
    problems = program_problems(requests, installed)
    if problems:
        raise InvalidInput("; ".join(dict.fromkeys(problems)))
