"""Issue 36's inputs, as a new user writes them: each refused before any calculation, naming what to write instead.

The input-dict cases are in ``test_bad_input.py`` (BAD_INPUTS, BAD_ARGUMENTS); here are the files, the command
line and the program preflight.
"""

import json
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import qcmb_dask
from qcmb_dask.cli import main
from qcmb_dask.errors import InvalidArgument, InvalidInput

from .conftest import assert_same_result, mbe_input, requires_nwchem
from .fake_programs import UncheckedHarness, calls

ROOT = Path(__file__).resolve().parent.parent
TRIMER_XYZ = (ROOT / "examples" / "water-trimer.xyz").read_text()


def refused(args: list, *words: str):
    """``qcmb-dask ARGS`` exits 2 with no traceback, and its message holds each of ``words``."""
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 2, out.output
    assert "Traceback" not in out.output
    for word in words:
        assert word in out.output, out.output
    return out.output


# -- files read by guessing ---------------------------------------------------------------------------------------


def test_an_xyz_line_with_a_freeze_flag_is_refused_not_shifted(tmp_path):
    lines = TRIMER_XYZ.splitlines()
    gaussian = [*lines[:2], *(f"{line.split()[0]} 0 {' '.join(line.split()[1:])}" for line in lines[2:])]
    path = tmp_path / "frozen.xyz"
    path.write_text("\n".join(gaussian) + "\n")
    refused(
        ["run", str(path), "--method", "hf", "--basis", "sto-3g", "--no-cache"],
        "line 3",
        "has 5 columns",
        "freeze flag",
    )


def test_an_xyz_file_in_bohr_is_refused_naming_the_factor(tmp_path):
    lines = TRIMER_XYZ.splitlines()
    in_bohr = [*lines[:2]]
    for line in lines[2:]:
        symbol, *xyz = line.split()
        in_bohr.append(f"{symbol} " + " ".join(f"{float(x) * 1.8897261:.6f}" for x in xyz))
    path = tmp_path / "bohr.xyz"
    path.write_text("\n".join(in_bohr) + "\n")
    refused(["plan", str(path), "--method", "hf", "--basis", "sto-3g"], "bonded to no other atom", "1.8897261")


def test_xyz_with_windows_line_endings_and_atomic_numbers_reads_the_same_molecule(tmp_path):
    plain = qcmb_dask.manybody_input(_write(tmp_path / "a.xyz", TRIMER_XYZ), method="hf", basis="sto-3g")
    odd = TRIMER_XYZ.replace("\n", "\r\n").replace("O ", "8  \t", 1)
    other = qcmb_dask.manybody_input(_write(tmp_path / "b.xyz", odd), method="hf", basis="sto-3g")
    assert other["molecule"] == plain["molecule"]


def test_a_json_key_given_twice_is_refused_naming_both_lines(tmp_path):
    data = mbe_input(2)
    text = json.dumps(data, indent=1)
    squeezed = [round(x * 0.52917721067, 6) for x in data["molecule"]["geometry"]]
    pasted = text.replace('"geometry": [', f'"geometry": {json.dumps(squeezed)},\n  "geometry": [', 1)
    path = _write(tmp_path / "twice.json", pasted)
    output = refused(["run", str(path), "--no-cache"], "'geometry' appears more than once", "delete the one")
    assert "lines" in output
    with pytest.raises(InvalidInput, match="appears more than once"):
        qcmb_dask.plan(path)


def test_a_yaml_key_given_twice_is_refused_naming_both_lines(tmp_path):
    text = yaml.safe_dump(mbe_input(2), sort_keys=False)
    pasted = text.replace("  fragments:", "  fragments:\n  - [0, 1, 2, 3, 4, 5]\n  fragments:", 1)
    path = _write(tmp_path / "twice.yaml", pasted)
    with pytest.raises(InvalidInput, match=r"the key 'fragments' appears twice in one mapping \(lines \d+ and \d+\)"):
        qcmb_dask.plan(path)


def test_a_directory_given_as_the_input_file_is_called_a_directory(tmp_path):
    with pytest.raises(InvalidInput, match="is a directory, not a file"):
        qcmb_dask.compute(tmp_path, "sync")
    with pytest.raises(FileNotFoundError):  # still what code that catches a missing file expects
        qcmb_dask.plan(tmp_path / "nowhere.json")


# -- the command line ---------------------------------------------------------------------------------------------


def test_threads_per_task_beyond_the_machine_gets_advice_that_would_be_accepted():
    from qcmb_dask.clusters.resources import for_this_machine, machine_cores

    with pytest.raises(ValueError, match=rf"Use e\.g\. n_workers=1, threads_per_task={machine_cores()}\.") as err:
        for_this_machine(1, 1000, None)
    advice = str(err.value).split("Use e.g. ")[1].rstrip(".")
    workers, threads = (int(part.split("=")[1]) for part in advice.split(", "))
    for_this_machine(workers, threads, None)  # the advice itself is accepted


def test_an_output_where_nothing_can_be_written_is_refused_before_the_run(tmp_path):
    refused(["run", str(ROOT / "examples" / "water-trimer.json"), "--out", "/proc/result.json"], "cannot be written")


def test_an_address_without_a_scheduler_is_a_short_message(tmp_path):
    began = time.perf_counter()
    refused(
        ["run", str(ROOT / "examples" / "water-trimer.json"), "--cluster", "tcp://127.0.0.1:1", "--no-cache"],
        "no Dask scheduler answers at tcp://127.0.0.1:1",
    )
    assert time.perf_counter() - began < 15


@pytest.mark.parametrize(
    "option, words",
    [
        ("cores=abc", "cores='abc' is not a whole number"),
        ("cores=0", "cores=0: give at least 1"),
        ("memory=lots", "memory='lots' is not a size"),
    ],
)
def test_a_cluster_option_of_the_wrong_type_names_the_option_and_the_type(option, words):
    refused(["job-script", "--cluster", "slurm", "--cluster-option", option], words)


def test_compute_many_given_one_input_says_a_list_is_expected():
    with pytest.raises(InvalidArgument, match=r"compute_many takes a list of inputs, got one dict"):
        qcmb_dask.compute_many(mbe_input(2), "sync")


def test_the_exit_codes_are_in_the_help():
    out = CliRunner().invoke(main, ["--help"])
    codes = [line.split()[0] for line in out.output.split("Exit status:")[1].splitlines()[:5] if line.strip()]
    assert codes == ["0", "1", "2", "130"], out.output
    assert "143 by SIGTERM" in out.output and "129 by SIGHUP" in out.output


# -- every public function checks what it is given ---------------------------------------------------------------

TRIMER = str(ROOT / "examples" / "water-trimer.json")
WRONGLY_CALLED = {
    "compute of a number": (lambda: qcmb_dask.compute(123, "sync"), r"cannot use an input of type int"),
    "plan of a number": (lambda: qcmb_dask.plan(123), r"cannot use an input of type int"),
    "optimize of a number": (lambda: qcmb_dask.optimize(123, cluster="sync"), r"cannot use an input of type int"),
    "a callback that is not a function": (
        lambda: qcmb_dask.compute(TRIMER, "sync", callback=5, cache=False),
        r"callback=5: expected a function",
    ),
    "frequencies of a missing file": (lambda: qcmb_dask.frequencies("nowhere.json"), r"no result file"),
    "manybody_input of a number": (
        lambda: qcmb_dask.manybody_input(123, method="hf", basis="sto-3g"),
        r"molecule: expected a Psi4-style string",
    ),
    "manybody_input with fragments=5": (
        lambda: qcmb_dask.manybody_input(
            str(ROOT / "examples" / "water-trimer.xyz"), method="hf", basis="sto-3g", fragments=5
        ),
        r"fragments: expected 'auto'",
    ),
    "job_script of a number": (lambda: qcmb_dask.job_script(123), r"cluster=123: expected a batch system name"),
    "an optimization of -1 steps": (
        lambda: qcmb_dask.optimize(TRIMER, cluster="sync", maxiter=-1),
        r"maxiter=-1: expected a whole number of optimization steps",
    ),
    "an optimization with no trust radius": (
        lambda: qcmb_dask.optimize(TRIMER, cluster="sync", trust=0),
        r"trust=0: expected a positive number",
    ),
}


@pytest.mark.parametrize("case", list(WRONGLY_CALLED))
def test_public_functions_say_what_they_expected(case):
    call, words = WRONGLY_CALLED[case]
    with pytest.raises(InvalidInput, match=words):
        call()


# -- the program preflight ----------------------------------------------------------------------------------------


def unchecked_input(keywords: dict | None = None) -> dict:
    return mbe_input(3, keywords={"bsse_type": "nocp", "max_nbody": 2}, program="unchecked", atomic_keywords=keywords)


def test_a_keyword_a_program_refuses_only_when_run_is_found_by_one_calculation(tmp_path):
    """A harness without check_request: the cheapest calculation runs once, fails, and the run is refused (rc 2 on
    the command line) instead of submitting every fragment to fail."""
    log = tmp_path / "calls.log"
    harness = UncheckedHarness(extras={"log": str(log)})
    with pytest.raises(InvalidInput, match=r"model chemistry '\(auto\)' \(unchecked hf/sto-3g\).*max_cycle=-5"):
        qcmb_dask.compute(unchecked_input({"max_cycle": -5}), "sync", harnesses=[harness], cache=tmp_path / "store")
    assert calls(log) == 1
    failures = list((tmp_path / "store").rglob("*failed*"))
    assert failures, "the preflight's failure is kept, as any fragment's"


def test_the_preflight_result_is_not_computed_twice(tmp_path):
    log = tmp_path / "calls.log"
    harness = UncheckedHarness(extras={"log": str(log)})
    result = qcmb_dask.compute(unchecked_input(), "sync", harnesses=[harness], cache=tmp_path / "store")
    assert calls(log) == 6  # 3 monomers and 3 dimers, the preflight's monomer among them
    reference = qcmb_dask.compute(mbe_input(3, keywords={"bsse_type": "nocp", "max_nbody": 2}), "sync", cache=False)
    assert_same_result(result, reference)


def test_the_preflight_can_be_switched_off(tmp_path):
    import dask

    log = tmp_path / "calls.log"
    harness = UncheckedHarness(extras={"log": str(log)})
    with dask.config.set({"qcmb_dask.preflight": "never"}), pytest.raises(Exception, match="max_cycle"):
        qcmb_dask.compute(unchecked_input({"max_cycle": -5}), "sync", harnesses=[harness], cache=False)
    assert calls(log) == 6  # every fragment ran, and failed


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@requires_nwchem
@pytest.mark.nwchem
def test_a_keyword_nwchem_refuses_is_a_refusal_on_the_command_line(tmp_path):
    """A real program without check_request: NWChem's own words come back, rc 2, one calculation in the store's
    failure records and nothing else computed."""
    data = mbe_input(3, keywords={"bsse_type": "nocp", "max_nbody": 2}, program="nwchem")
    data["specification"]["specification"]["(auto)"]["keywords"] = {"scf__nosuchkeyword": 3}
    path = _write(tmp_path / "bad-nwchem.json", json.dumps(data))
    store = tmp_path / "store"
    refused(
        ["run", str(path), "--cluster", "sync", "--cache", str(store)],
        "its cheapest calculation",
        "input_error",
        "failures --show",
    )
    assert len(list((store / "failed").iterdir())) == 1
    assert not [p for p in store.rglob("*.json") if "failed" not in p.parts]  # no result stored


def test_bonds_that_short_run_when_the_input_says_they_are_meant():
    """Mo-Mo quadruple bonds are 0.68 of the covalent radii's sum: refused by default, run when the input says so,
    to QCManyBody's answer (closed-form test program)."""
    from qcmanybody.models.v2 import ManyBodyInput
    from qcmanybody.v2 import ManyBodyComputer

    from .fake_programs import ToyHarness

    bohr = 1.8897261246257702
    data = mbe_input(2, keywords={"bsse_type": "cp", "max_nbody": 2}, program="toy")
    data["molecule"] = {
        "symbols": ["Mo", "Mo", "Mo", "Mo"],
        "geometry": [x * bohr for x in (0, 0, 0, 0, 0, 2.09, 6, 0, 0, 6, 0, 2.09)],
        "fragments": [[0, 1], [2, 3]],
        "fragment_multiplicities": [1, 1],
    }
    data["specification"]["specification"]["(auto)"]["model"]["basis"] = "def2-svp"
    with pytest.raises(InvalidInput, match=r"atoms 0 \(Mo\) and 1 \(Mo\).*short_bonds"):
        qcmb_dask.plan(data)
    data["specification"]["extras"] = {"qcmb_dask": {"short_bonds": True}}
    harness = ToyHarness()
    ours = qcmb_dask.compute(data, "sync", harnesses=[harness], cache=False)
    assert_same_result(ours, ManyBodyComputer.from_manybodyinput(ManyBodyInput(**data)))
