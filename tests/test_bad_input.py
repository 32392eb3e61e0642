"""Bad input is refused before anything is submitted, with a message that names the problem.

Every input here is a two-level water trimer whose 1-body level runs a working program that logs each
calculation (``FaultyHarness`` with no faults); the log staying empty shows that no QC calculation ran.
"""

import json

import pytest
import qcengine

import qcmb_dask
from qcmb_dask.errors import InvalidArgument, InvalidInput

from .conftest import mbe_input
from .fake_programs import FaultyHarness, calls


def two_level_input(bad_program="faulty", bad_method="hf", bad_basis="6-31g", driver="energy", keywords=None):
    """1-body with the logging program (always fine), 2- and 3-body with the model chemistry under test."""
    data = mbe_input(
        3,
        driver=driver,
        keywords={"bsse_type": "nocp", "levels": {1: "good", 3: "under-test"}, **(keywords or {})},
        specs={"good": ("hf", "sto-3g"), "under-test": (bad_method, bad_basis)},
        program="faulty",
    )
    data["specification"]["specification"]["under-test"]["program"] = bad_program
    return data


def molecule_changed(**changes):
    data = two_level_input()
    data["molecule"].update(changes)
    return data


def geometry_with_atom_4_on_atom_1():
    geometry = two_level_input()["molecule"]["geometry"]
    geometry[9:12] = geometry[0:3]
    return geometry


def uninstalled_program():
    """A program QCEngine knows that is not installed on this machine (CFOUR, else Psi4)."""
    for name in ("cfour", "psi4", "mrchem"):
        if not qcengine.get_program(name, check=False).found():
            return name
    pytest.skip("every candidate program is installed here")


BAD_INPUTS = {
    "atoms on top of each other": (
        lambda: molecule_changed(geometry=geometry_with_atom_4_on_atom_1()),
        r"molecule.geometry: atoms 0 and 3 are 0.000 Bohr apart",
    ),
    "impossible multiplicity": (
        lambda: molecule_changed(fragment_multiplicities=[2, 1, 1]),
        r"fragment 0 \(fragment_charges\[0\] = 0\) has 10 electrons, an even number, which cannot have multiplicity 2",
    ),
    "charges that do not add up": (
        lambda: molecule_changed(molecular_charge=1),
        r"molecular_charge is 1 but fragment_charges add up to 0",
    ),
    "one fragment": (
        lambda: molecule_changed(fragments=[list(range(9))], fragment_charges=[0], fragment_multiplicities=[1]),
        r"needs at least two.*fragments",
    ),
    "no fragmentation": (
        lambda: {
            **two_level_input(),
            "molecule": {
                k: v
                for k, v in two_level_input()["molecule"].items()
                if k not in ("fragments", "fragment_charges", "fragment_multiplicities")
            },
        },
        r"molecule.fragments is missing: a many-body expansion needs the molecule split into fragments",
    ),
    "unknown program": (
        lambda: two_level_input(bad_program="no-such-program"),
        r"program 'no-such-program' is unknown to QCEngine.*harnesses=",
    ),
    "method the program cannot do": (
        lambda: two_level_input(bad_program="pyscf", bad_method="casscf"),
        r"PySCF does not know the method 'casscf'",
    ),
    "driver the method cannot do": (
        lambda: two_level_input(bad_program="pyscf", bad_method="ccsd(t)", driver="gradient"),
        r"cannot run driver 'gradient' for method 'ccsd\(t\)'",
    ),
    "basis set the program lacks": (
        lambda: two_level_input(bad_program="pyscf", bad_basis="cc-pvdz-no-such"),
        r"Basis set 'cc-pvdz-no-such' is not in PySCF's basis library for H, O",
    ),
    "unknown program keyword": (
        lambda: _with_keywords(two_level_input(bad_program="pyscf"), {"conv_tl": 1e-8}),
        r"Unknown PySCF keyword\(s\) \['conv_tl'\]",
    ),
    "max_nbody larger than the fragment count": (
        lambda: two_level_input(keywords={"levels": {1: "good", 2: "under-test"}, "max_nbody": 4}),
        r"max_nbody=4 should be between 1 and 3",
    ),
    "unknown bsse_type": (
        lambda: two_level_input(keywords={"bsse_type": "counterpoise"}),
        r"bsse_type",
    ),
    "duplicate model chemistries": (
        lambda: two_level_input(bad_method="HF", bad_basis="STO-3G"),
        r"model chemistries 'good' and 'under-test' are the same calculation",
    ),
    "a level naming a model chemistry that is not given": (
        lambda: two_level_input(keywords={"levels": {1: "good", 3: "missing"}}),
        r"levels use model chemistry 'missing'.*names only 'good', 'under-test'",
    ),
    # Malformed molecules: named by field, atom or fragment, never QCElemental's internals or a raw exception.
    "no fragments at all": (
        lambda: molecule_changed(fragments=[], fragment_charges=[], fragment_multiplicities=[]),
        r"molecule\.fragments has 0 fragment\(s\); .*needs at least two fragments",
    ),
    "an empty fragment": (
        lambda: molecule_changed(fragments=[[0, 1, 2], [3, 4, 5, 6, 7, 8], []]),
        r"molecule\.fragments\[2\] is empty",
    ),
    "a fragment index out of range": (
        lambda: molecule_changed(fragments=[[0, 1, 2], [3, 4, 5], [6, 7, 9]]),
        r"molecule\.fragments\[2\] names atom 9, but atoms are numbered 0 to 8",
    ),
    "an atom in no fragment": (
        lambda: molecule_changed(fragments=[[0, 1, 2], [3, 4, 5], [6, 7]]),
        r"molecule\.fragments: atoms \[8\] are in no fragment",
    ),
    "an atom in two fragments": (
        lambda: molecule_changed(fragments=[[0, 1, 2], [2, 3, 4, 5], [6, 7, 8]]),
        r"atom 2 \(H\) is in fragment 0 and fragment 1",
    ),
    "an unknown element symbol": (
        lambda: molecule_changed(symbols=["O", "H", "H", "Xx", "H", "H", "O", "H", "H"]),
        r"molecule\.symbols\[3\]: 'Xx' is not an element symbol",
    ),
    "fewer coordinates than atoms need": (
        lambda: molecule_changed(geometry=two_level_input()["molecule"]["geometry"][:-1]),
        r"molecule\.geometry: 9 atoms \(in symbols\) need 27 coordinates .*got 26",
    ),
    "no geometry": (
        lambda: {
            **two_level_input(),
            "molecule": {k: v for k, v in two_level_input()["molecule"].items() if k != "geometry"},
        },
        r"molecule\.geometry is missing",
    ),
    "a NaN coordinate": (lambda: _with_coordinate(float("nan")), r"atom 1 \(H\) has y = nan; .*finite number"),
    "an infinite coordinate": (lambda: _with_coordinate(float("inf")), r"atom 1 \(H\) has y = inf"),
    "a null coordinate": (lambda: _with_coordinate(None), r"atom 1 \(H\) has y = None"),
    "ghost atoms in the input": (
        lambda: molecule_changed(real=[True] * 8 + [False]),
        r"molecule\.real: atoms \[8\] are ghost atoms.*places ghost atoms itself",
    ),
    "fragment charges for the wrong number of fragments": (
        lambda: molecule_changed(fragment_charges=[0, 0]),
        r"molecule\.fragment_charges: expected one value per fragment \(3\)",
    ),
    # Malformed specifications.
    "bsse_type of the wrong type": (
        lambda: two_level_input(keywords={"bsse_type": 5}),
        r"specification\.keywords\.bsse_type: expected \"cp\", \"nocp\", \"vmfc\"",
    ),
    "an empty specification": (
        lambda: {**two_level_input(), "specification": {**two_level_input()["specification"], "specification": {}}},
        r"specification\.specification: give at least one model chemistry",
    ),
    "max_nbody 0": (lambda: two_level_input(keywords={"max_nbody": 0, "levels": None}), r"max_nbody: expected a whole"),
    "empty levels": (lambda: two_level_input(keywords={"levels": {}}), r"keywords\.levels: expected n-body order"),
    "an expansion of astronomical size": (
        lambda: _many_fragments(64),
        r"needs up to 1\.845e\+19 calculations \(up to 64-body\).*max-calculations",
    ),
    # Issue 36: each of these used to run silently to a wrong number, fail every fragment, or speak of internals.
    "a geometry in Angstrom": (
        lambda: molecule_changed(geometry=[x * 0.52917721067 for x in two_level_input()["molecule"]["geometry"]]),
        r"atoms 0 \(O\) and 1 \(H\) are .* Bohr .* apart.*look like Angstrom.*multiply every coordinate by 1\.8897261",
    ),
    "a geometry squeezed past any bond": (
        lambda: molecule_changed(geometry=[x * 0.3 for x in two_level_input()["molecule"]["geometry"]]),
        r"atoms 0 \(O\) and 1 \(H\) are 0\.5\d\d Bohr .* closer than any bond",
    ),
    "levels starting at 0": (
        lambda: two_level_input(keywords={"levels": {0: "good", 3: "under-test"}}),
        r"levels: key 0 is not an n-body order of this molecule; the keys are whole numbers from 1 \(monomers\) to 3",
    ),
    "a level above the number of fragments": (
        lambda: two_level_input(keywords={"levels": {1: "good", 4: "under-test"}}),
        r"levels: key 4 is not an n-body order",
    ),
    "a keyword value PySCF would refuse for every fragment": (
        lambda: _with_atomic_keywords(two_level_input(), "under-test", {"max_cycle": -5}),
        r"max_cycle=-5: the SCF needs at least 1 iteration",
    ),
    "fragment indices written as floats": (
        lambda: molecule_changed(fragments=[[0.0, 1.0, 2.0], [3, 4, 5], [6, 7, 8]]),
        r"molecule\.fragments\[0\] holds 0\.0: atom indices must be integers",
    ),
    "a charge in quotes": (
        lambda: molecule_changed(molecular_charge="0"),
        r"molecule\.molecular_charge = '0': a charge is a number, written without quotes",
    ),
    "a fragment charge that is not finite": (
        lambda: molecule_changed(fragment_charges=[0, float("nan"), 0]),
        r"molecule\.fragment_charges\[1\] = nan: a charge is a number",
    ),
    "an infinite multiplicity": (
        lambda: molecule_changed(fragment_multiplicities=[1, float("inf"), 1]),
        r"fragment_multiplicities\[1\] = inf: a multiplicity is 2S\+1",
    ),
    "a misspelt model field": (
        lambda: _with_model(two_level_input(), "under-test", {"method": "hf", "basiss": "6-31g"}),
        r"\['under-test'\]\.model: unknown field 'basiss'; did you mean 'basis'\?",
    ),
    "a model without a basis": (
        lambda: _with_model(two_level_input(), "under-test", {"method": "hf"}),
        r"PySCF needs a basis set: give specification\.model\.basis",
    ),
}


def _with_atomic_keywords(data: dict, mc: str, keywords: dict) -> dict:
    data["specification"]["specification"][mc]["keywords"] = keywords
    return data


def _with_model(data: dict, mc: str, model: dict) -> dict:
    data["specification"]["specification"][mc]["model"] = model
    return data


def _with_coordinate(value):
    geometry = two_level_input()["molecule"]["geometry"]
    geometry[4] = value
    return molecule_changed(geometry=geometry)


def _many_fragments(n):
    """n helium atoms 3 Bohr apart, each its own fragment, expanded to n-body."""
    data = mbe_input(3, keywords={"bsse_type": "nocp", "max_nbody": n}, program="faulty")
    data["molecule"] = {
        "symbols": ["He"] * n,
        "geometry": [x for i in range(n) for x in (3.0 * i, 0.0, 0.0)],
        "fragments": [[i] for i in range(n)],
    }
    return data


def _with_keywords(data, keywords):
    data["specification"]["specification"]["under-test"]["keywords"] = keywords
    return data


@pytest.fixture
def logging_program(tmp_path):
    log = tmp_path / "calls.log"
    return FaultyHarness(extras={"log": str(log)}), log


def test_the_two_level_input_itself_is_fine(logging_program):
    """The baseline every bad input departs from runs, and its 1-body level goes through the log."""
    harness, log = logging_program
    plan = qcmb_dask.plan(two_level_input(), harnesses=[harness])
    assert {t.model_chemistry for t in plan} == {"good", "under-test"}
    qcmb_dask.compute(
        two_level_input(keywords={"levels": {1: "good"}, "max_nbody": 1}), "sync", harnesses=[harness], cache=False
    )
    assert calls(log) == 3


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_before_any_calculation(case, logging_program, tmp_path, scenario):
    make, message = BAD_INPUTS[case]
    harness, log = logging_program
    with pytest.raises(InvalidInput, match=message):
        qcmb_dask.compute(make(), "sync", harnesses=[harness], cache=tmp_path / "store", progress=False)
    assert calls(log) == 0
    assert not (tmp_path / "store").exists()  # not even the store was created
    scenario.record(f"bad input: {case}", "InvalidInput naming it, before anything ran", calls=0, stored=0)


BAD_ARGUMENTS = {
    "a program name passed as a harness": ({"harnesses": ["pyscf"]}, r"harnesses: 'pyscf' is not a QCEngine Program"),
    "negative retries": ({"retries": -1}, r"retries=-1: expected 0"),
    "no threads per task": ({"threads_per_task": 0}, r"threads_per_task=0: expected a whole number of at least 1"),
    "no workers": ({"n_workers": 0}, r"n_workers=0"),
    "negative memory": ({"memory_per_task": -2.0}, r"memory_per_task=-2\.0: expected a positive number of GiB"),
    "negative timeout": ({"timeout_per_task": -1}, r"timeout_per_task=-1: expected a positive number of seconds"),
    "a report in a directory that does not exist": (
        {"report": "/no/such/dir/report.html"},
        r"report= '/no/such/dir/report\.html': the directory '/no/such/dir' does not exist",
    ),
    "a cache that is neither a path nor a switch": ({"cache": 5}, r"cache=5: expected a directory path"),
    "an unknown on_error": ({"on_error": "ignore"}, r"on_error='ignore'"),
    "a report where nothing can be written": (
        {"report": "/proc/report.html"},
        r"report= '/proc/report\.html' cannot be written",
    ),
    "an address where no scheduler answers": (
        {"cluster": "tcp://127.0.0.1:1"},
        r"no Dask scheduler answers at tcp://127\.0\.0\.1:1 \(.*\)\. Check that the scheduler is running",
    ),
    "an address that is not one": ({"cluster": "tcp://127.0.0.1:port"}, r"is not a scheduler address"),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_arguments_are_refused_before_any_calculation(case, logging_program, tmp_path):
    arguments, message = BAD_ARGUMENTS[case]
    harness, log = logging_program
    arguments = {"harnesses": [harness], "cache": tmp_path / "store", "cluster": "sync", **arguments}
    with pytest.raises(InvalidArgument, match=message):
        qcmb_dask.compute(two_level_input(), progress=False, **arguments)
    assert calls(log) == 0
    assert not (tmp_path / "store").exists()


def test_the_size_limit_can_be_raised_and_counts_bound_the_real_plan(logging_program):
    """The count is an upper bound within 2x of the plan's real size, for every BSSE treatment and level layout."""
    import dask

    from qcmb_dask.planning.expansion_size import count

    harness, _ = logging_program
    one = {"(auto)": ("hf", "sto-3g")}
    two = {"good": ("hf", "sto-3g"), "under-test": ("hf", "6-31g")}
    for keywords, specs in (
        ({"bsse_type": "cp", "max_nbody": 3}, one),
        ({"bsse_type": ["nocp", "cp", "vmfc"]}, one),
        ({"bsse_type": "vmfc", "max_nbody": 2}, one),
        ({"bsse_type": ["cp", "nocp"], "return_total_data": True}, one),
        ({"bsse_type": "nocp", "supersystem_ie_only": True}, one),
        ({"bsse_type": ["vmfc", "cp"], "levels": {1: "good", 3: "under-test"}}, two),
        (
            {"bsse_type": "nocp", "levels": {1: "good", 2: "under-test", "supersystem": "ss"}},
            {**two, "ss": ("hf", "3-21g")},
        ),
    ):
        plan = qcmb_dask.plan(mbe_input(3, keywords=keywords, specs=specs, program="faulty"), harnesses=[harness])
        options = plan.input.model.specification.keywords
        counted = count(
            plan.nfragments,
            plan.bsse_type,
            _nbodies_per_mc(plan),
            max_nbody=plan.max_nbody,
            return_total_data=bool(options.return_total_data),
            supersystem_ie_only=options.supersystem_ie_only,
        )
        bound = sum(sum(per.values()) for per in counted.values())
        assert len(plan) <= bound <= 2 * len(plan), (keywords, len(plan), bound)
    with (
        dask.config.set({"qcmb_dask.max-calculations": 5}),
        pytest.raises(InvalidInput, match=r"needs up to \d+ calculations .*plans at most 5"),
    ):
        qcmb_dask.plan(two_level_input(), harnesses=[harness])
    with dask.config.set({"qcmb_dask.max-calculations": 10**30}):
        assert len(qcmb_dask.plan(two_level_input(), harnesses=[harness])) > 5


def _nbodies_per_mc(plan):
    from qcmb_dask.qcmanybody_adapter import qcmb_computer

    return qcmb_computer(plan.input).qcmb_core.nbodies_per_mc_level


def test_a_program_that_is_not_installed_says_how_to_get_it(logging_program):
    name = uninstalled_program()
    harness, log = logging_program
    data = two_level_input(bad_program=name)
    assert len(qcmb_dask.plan(data, harnesses=[harness])) > 0  # planning alone does not need it installed
    with pytest.raises(InvalidInput, match=rf"program '{name}' is not installed here: .*(conda|pip|apt|see)"):
        qcmb_dask.compute(data, "sync", harnesses=[harness], cache=False, progress=False)
    assert calls(log) == 0


def test_the_embedded_cluster_is_not_even_started_for_bad_input(logging_program, monkeypatch):
    import distributed

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started for an input that cannot run")

    monkeypatch.setattr(distributed, "LocalCluster", no_cluster)
    harness, log = logging_program
    with pytest.raises(InvalidInput, match="casscf"):
        qcmb_dask.compute(two_level_input(bad_program="pyscf", bad_method="casscf"), harnesses=[harness], cache=False)
    assert calls(log) == 0


def test_missing_and_malformed_input_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        qcmb_dask.compute(tmp_path / "nowhere.json", "sync", cache=False)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(two_level_input())[:-20])
    with pytest.raises(InvalidInput, match="broken.json"):
        qcmb_dask.compute(broken, "sync", cache=False)
