"""Fuzzed inputs: every mutation of a valid input either runs to exactly QCManyBody's answer or is refused with
InvalidInput before any calculation; never a traceback from inside the package, never a silent or half run.

The program is ``toy`` (tests/fake_programs.py): a closed-form energy of the geometry, checked like PySCF, so
each accepted input is also run through QCManyBody's sequential ManyBodyComputer in milliseconds. CI runs the
``ci`` profile (a bounded number of examples, derandomized); ``pytest tests/test_fuzz_inputs.py
--hypothesis-profile=long`` runs a deeper pass. Every failure found is kept below as a named regression case.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import re
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import qcmb_dask
from qcmb_dask.errors import InputWarning, InvalidInput
from qcmb_dask.planning.inputs import load_json
from qcmb_dask.planning.molecule_text import from_psi4_string, from_xyz

from .conftest import WATER_DIMER_ANGSTROM, assert_same_result, mbe_input
from .fake_programs import ToyHarness, calls

BOHR = 1.8897261246257702


def base_input(nwaters: int, bsse, max_nbody: int) -> dict:
    return mbe_input(nwaters, keywords={"bsse_type": bsse, "max_nbody": max_nbody}, program="toy")


BASES = st.builds(
    base_input,
    st.sampled_from([2, 3]),
    st.sampled_from(["nocp", "cp", ["cp", "nocp"], "vmfc"]),
    st.sampled_from([1, 2, 3]),
)

ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 2, 0.5, 1e300, -1e-300, "0", "1", "", "hf", "cp", "2"]),
    st.text(max_size=6),
    st.lists(st.integers(-2, 10), max_size=4),
    st.lists(st.lists(st.integers(-1, 9), max_size=4), max_size=3),
    st.dictionaries(st.sampled_from(["1", "2", "0", "a", "basis"]), st.sampled_from(["hf", 1, None]), max_size=2),
)


def paths(tree, prefix=()):
    """Every (path to a value) in a nested dict/list input."""
    found = [prefix] if prefix else []
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += paths(value, (*prefix, key))
    elif isinstance(tree, list) and len(tree) <= 12:  # geometry is long: its items are reached by whole-list moves
        for index, value in enumerate(tree):
            found += paths(value, (*prefix, index))
    return found


def _parent(tree, path):
    for step in path[:-1]:
        tree = tree[step]
    return tree


@st.composite
def mutated_inputs(draw):
    data = copy.deepcopy(draw(BASES))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(
            st.sampled_from(
                ["replace", "drop", "misspell", "units", "negate", "fragments", "geometry", "keyword"]
                + ["stretch", "float charges", "keywords"]  # inputs that should still run: compared with QCManyBody
            )
        )
        # an earlier mutation may have removed what this one changes: then it changes nothing
        with contextlib.suppress(TypeError, KeyError, IndexError, AttributeError, StopIteration):
            mutate(draw, data, kind)
    return data


def mutate(draw, data: dict, kind: str) -> None:
    if kind == "stretch":
        factor = draw(st.floats(0.9, 1.5))
        data["molecule"]["geometry"] = [x * factor for x in data["molecule"]["geometry"]]
    elif kind == "float charges":
        molecule = data["molecule"]
        molecule["fragment_charges"] = [float(c) for c in molecule["fragment_charges"]]
        molecule[draw(st.sampled_from(["molecular_charge", "fragment_multiplicities"]))] = None
    elif kind == "keywords":
        keywords = data["specification"]["keywords"]
        keywords["max_nbody"] = draw(st.integers(1, len(data["molecule"]["fragments"])))
        keywords[draw(st.sampled_from(["bsse_type", "return_total_data", "supersystem_ie_only"]))] = draw(
            st.sampled_from(["cp", "vmfc", ["nocp", "cp"], True, False])
        )
    elif kind == "units":
        factor = draw(st.sampled_from([1 / BOHR, BOHR, 0.3, 10.0, -1.0]))
        data["molecule"]["geometry"] = [x * factor for x in data["molecule"]["geometry"]]
    elif kind == "fragments":
        fragments = data["molecule"]["fragments"]
        change = draw(st.sampled_from(["overlap", "missing", "swap", "empty", "merge"]))
        if change == "overlap":
            fragments[1].append(fragments[0][0])
        elif change == "missing":
            fragments[-1].pop()
        elif change == "swap":
            fragments[0][0], fragments[1][0] = fragments[1][0], fragments[0][0]
        elif change == "empty":
            fragments.append([])
        else:
            fragments[0] += fragments.pop(1)
    elif kind == "geometry":
        geometry = data["molecule"]["geometry"]
        index = draw(st.integers(0, len(geometry) - 1))
        geometry[index] = draw(st.one_of(st.floats(allow_nan=True, allow_infinity=True), ODD_VALUES))
    elif kind == "keyword":
        spec = next(iter(data["specification"]["specification"].values()))
        name = draw(st.sampled_from(["max_cycle", "conv_tol", "reference", "level_shift", "grid_level", "nope"]))
        spec["keywords"][name] = draw(ODD_VALUES)
    else:
        candidates = paths(data)
        if not candidates:
            return
        path = draw(st.sampled_from(candidates))
        parent = _parent(data, path)
        key = path[-1]
        if kind == "replace":
            parent[key] = draw(ODD_VALUES)
        elif kind == "negate" and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            parent[key] = -parent[key]
        elif isinstance(parent, dict) and kind == "drop":
            del parent[key]
        elif isinstance(parent, dict) and kind == "misspell":
            parent[draw(st.sampled_from([key + "s", key[:-1], key.upper(), "_" + key]))] = parent.pop(key)


def toy_harness(log: str) -> ToyHarness:
    return ToyHarness(extras={"log": log})


def check_runs_exactly_or_is_refused(data: dict) -> str:
    """The property; returns "refused" or "ran" (for the regression cases' expectations)."""
    from qcmanybody.models.v2 import ManyBodyInput
    from qcmanybody.v2 import ManyBodyComputer

    with tempfile.TemporaryDirectory() as folder:
        log = os.path.join(folder, "calls.log")
        harness = toy_harness(log)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InputWarning)
                ours = qcmb_dask.compute(copy.deepcopy(data), "sync", harnesses=[harness], cache=False, progress=False)
        except InvalidInput:
            assert calls(log) == 0, "refused after a calculation had run"
            return "refused"
        qcmb_dask.programs.register([harness])
        reference = ManyBodyComputer.from_manybodyinput(ManyBodyInput(**copy.deepcopy(data)))
        assert_same_result(ours, reference)
        return "ran"


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated_inputs())
def test_every_mutated_input_runs_exactly_or_is_refused(data):
    event(check_runs_exactly_or_is_refused(data))


# -- regression cases: inputs the fuzzing (or issue 36) found, each with what it must do --------------------------


def _changed(change, nwaters=2, bsse="nocp", max_nbody=2) -> dict:
    data = base_input(nwaters, bsse, max_nbody)
    change(data)
    return data


REGRESSIONS = {
    "geometry in Angstrom": (lambda d: d["molecule"].update(geometry=[x / BOHR for x in d["molecule"]["geometry"]])),
    "levels from 0": (lambda d: d["specification"]["keywords"].update(levels={0: "(auto)"})),
    "max_cycle -5": (lambda d: d["specification"]["specification"]["(auto)"]["keywords"].update(max_cycle=-5)),
    "conv_tol NaN": (lambda d: d["specification"]["specification"]["(auto)"]["keywords"].update(conv_tol=math.nan)),
    "charge as a string": (lambda d: d["molecule"].update(molecular_charge="0")),
    "fragment index as a float": (lambda d: d["molecule"].update(fragments=[[0.0, 1, 2], [3, 4, 5]])),
    "basis misspelt": (
        lambda d: d["specification"]["specification"]["(auto)"].update(model={"method": "hf", "basiss": "sto-3g"})
    ),
    "geometry in Bohr squared": (lambda d: d["molecule"].update(geometry=[x * 0.3 for x in d["molecule"]["geometry"]])),
    "multiplicity infinite": (lambda d: d["molecule"].update(fragment_multiplicities=[1, math.inf])),
}


@pytest.mark.parametrize("case", list(REGRESSIONS))
def test_regression_cases_are_refused(case):
    assert check_runs_exactly_or_is_refused(_changed(REGRESSIONS[case])) == "refused"


def test_the_unmutated_inputs_run_to_qcmanybodys_answer():
    for bsse in ("nocp", "cp", "vmfc"):
        assert check_runs_exactly_or_is_refused(base_input(3, bsse, 3)) == "ran"
    gradient = base_input(2, "cp", 2)
    gradient["specification"]["driver"] = "gradient"
    assert check_runs_exactly_or_is_refused(gradient) == "ran"


# -- text readers: understood in full, or refused naming the line -------------------------------------------------

XYZ = "6\nwater dimer" + WATER_DIMER_ANGSTROM

#: changes that keep the molecule: the reader must read exactly the same atoms
NEUTRAL = {
    "crlf": lambda lines, i: None,  # applied to the joined text
    "tabs": lambda lines, i: lines.__setitem__(i, lines[i].replace("  ", "\t")),
    "padding": lambda lines, i: lines.__setitem__(i, "   " + lines[i] + "   "),
    "numbered label": lambda lines, i: lines.__setitem__(
        i, lines[i].replace(lines[i].split()[0], lines[i].split()[0] + "7", 1)
    ),
    "exponent": lambda lines, i: lines.__setitem__(
        i, " ".join([lines[i].split()[0], *(f"{float(x):.6e}" for x in lines[i].split()[1:])])
    ),
}
#: changes that alter what a line says: the reader must refuse
BREAKING = {
    "extra column": lambda lines, i: lines.__setitem__(i, lines[i].split()[0] + " 0 " + " ".join(lines[i].split()[1:])),
    "extra trailing column": lambda lines, i: lines.__setitem__(i, lines[i] + " 1.0"),
    "missing column": lambda lines, i: lines.__setitem__(i, " ".join(lines[i].split()[:3])),
    "unknown symbol": lambda lines, i: lines.__setitem__(i, "Qx " + " ".join(lines[i].split()[1:])),
    "nan": lambda lines, i: lines.__setitem__(i, " ".join([*lines[i].split()[:3], "nan"])),
    "word for a number": lambda lines, i: lines.__setitem__(i, " ".join([*lines[i].split()[:3], "zero"])),
}


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(sorted(NEUTRAL)), st.integers(0, 5)), max_size=4),
    st.one_of(st.none(), st.tuples(st.sampled_from(sorted(BREAKING)), st.integers(0, 5))),
    st.sampled_from(["", "\n", "\n\n  \n"]),
)
@example([], ("extra column", 0), "")
def test_xyz_lines_are_read_in_full_or_refused(neutral, breaking, trailing):
    expected = from_xyz(XYZ)
    lines = XYZ.splitlines()
    crlf = False
    for name, index in neutral:
        crlf |= name == "crlf"
        NEUTRAL[name](lines, 2 + index)
    if breaking is not None:
        BREAKING[breaking[0]](lines, 2 + breaking[1])
    text = ("\r\n" if crlf else "\n").join(lines) + trailing
    if breaking is None:
        got = from_xyz(text)
        assert got["symbols"] == expected["symbols"]
        np.testing.assert_allclose(got["geometry"], expected["geometry"], rtol=0, atol=1e-12)
        assert got["fragments"] == expected["fragments"]
    else:
        with pytest.raises(InvalidInput, match=rf"line {3 + breaking[1]}\b"):
            from_xyz(text)


PSI4 = """units angstrom
0 1
O  -1.551007  -0.114520   0.000000
H  -1.934259   0.762503   0.000000
H  -0.599677   0.040712   0.000000
--
0 1
O   1.350625   0.111469   0.000000
H   1.680398  -0.373741  -0.758561
H   1.680398  -0.373741   0.758561
"""
PSI4_ATOM_LINES = [2, 3, 4, 7, 8, 9]


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from(["tabs", "padding", "exponent", "crlf"]), st.integers(0, 5)), max_size=3),
    st.one_of(st.none(), st.tuples(st.sampled_from(sorted(BREAKING)), st.integers(0, 5))),
)
@example([], ("nan", 0))  # found by the fuzzing: QCElemental took 'O x y nan' for a Z-matrix line, then a KeyError
def test_psi4_strings_are_read_in_full_or_refused(neutral, breaking):
    expected = from_psi4_string(PSI4)
    lines = PSI4.splitlines()
    crlf = False
    for name, index in neutral:
        crlf |= name == "crlf"
        NEUTRAL[name](lines, PSI4_ATOM_LINES[index])
    if breaking is not None:
        BREAKING[breaking[0]](lines, PSI4_ATOM_LINES[breaking[1]])
    text = ("\r\n" if crlf else "\n").join(lines) + "\n"
    if breaking is None:
        got = from_psi4_string(text)
        assert got["symbols"] == expected["symbols"]
        np.testing.assert_allclose(got["geometry"], expected["geometry"], rtol=0, atol=1e-12)
    else:
        with pytest.raises(InvalidInput):
            from_psi4_string(text)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_json_key_repeated_anywhere_is_refused(data):
    document = base_input(2, "cp", 2)
    text = json.dumps(document, indent=1)
    keys = sorted({line.split('"')[1] for line in text.splitlines() if line.strip().startswith('"') and '":' in line})
    key = data.draw(st.sampled_from(keys))
    occurrence = text.index(f'"{key}":')
    repeated = text[:occurrence] + f'"{key}": 0,\n' + text[occurrence:]
    with pytest.raises(InvalidInput, match=re.escape(f"the key '{key}' appears more than once")):
        load_json(repeated)
    assert load_json(text) == json.loads(text)
