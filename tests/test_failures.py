"""Failures a person can read: a few lines per kind of failure, the program's own reason, the whole record kept.

The unit tests build QCEngine-shaped messages; the NWChem test misspells a basis set for the README's trimer.
"""

import json
import warnings
from pathlib import Path

import dask
import pytest
from click.testing import CliRunner

from qcmb_dask.cli import main
from qcmb_dask.errors import FragmentError, FragmentsFailed, one_line_reason

from .conftest import requires_nwchem

ROOT = Path(__file__).resolve().parent.parent

#: the shape of QCEngine's message when a program ran and failed: input, output, stderr, an empty traceback
PROGRAM_FAILED = """QCEngine Unknown Error: INPUT:
basis
  O library cc-pvdzz
end
 ...a long output...
 input error at line   12: at end of line looking for character string
 ------------------------------------------------------------------------
 There is an error in the specified basis set
 ------------------------------------------------------------------------

STDERR:
[0] ARMCI Error: 0:bas_tag_lib: failed opening basis file:
with errorcode -1.

TRACEBACK:
NoneType: None
"""


def test_the_reason_is_the_programs_last_error_line_or_the_first_line():
    assert one_line_reason(PROGRAM_FAILED) == "There is an error in the specified basis set"
    stderr_only = "QCEngine Unknown Error: INPUT:\nbasis sto-3g\nSTDERR:\nSegmentation fault error in libint\n"
    assert one_line_reason(stderr_only) == "Segmentation fault error in libint"
    assert one_line_reason("injected: this dimer never converges\nTraceback ...") == (
        "injected: this dimer never converges"
    )
    assert len(one_line_reason("x" * 5000)) == 200


def failure(label, nbody=2, message=PROGRAM_FAILED, error_type="unknown_error", record=None):
    return FragmentError(label, nbody, "nwchem", "hf", "cc-pvdzz", error_type, message, record=record)


def test_many_identical_failures_take_a_few_lines_and_every_one_stays_whole():
    failures = [failure(f"dimer-{i}", record=f"/store/failed/{i}.json") for i in range(13)]
    failures.append(failure("trimer", 3, "ran longer than timeout_per_task=4 s on 2 tries", "timeout"))
    err = FragmentsFailed(failures, store="/store")
    text = str(err)
    lines = text.splitlines()
    assert len(lines) <= 15, text
    assert "... and 10 more fragment(s) that failed the same way" in text
    assert "timeout: ran longer than timeout_per_task=4 s" in text
    assert "NoneType" not in text and "ARMCI" not in text
    assert sum("There is an error in the specified basis set" in line for line in lines) == 3
    assert "[input and full error: /store/failed/0.json]" in text
    assert err.failures[0].message == PROGRAM_FAILED  # the whole text, for whoever wants it


@requires_nwchem
@pytest.mark.nwchem
@pytest.mark.slow
def test_a_misspelt_basis_with_nwchem_prints_a_few_lines_and_keeps_every_record(tmp_path, scenario):
    data = json.loads((ROOT / "examples" / "water-trimer.json").read_text())
    for spec in data["specification"]["specification"].values():
        spec["program"], spec["model"]["basis"] = "nwchem", "cc-pvdzz"
    bad = tmp_path / "trimer-misspelt.json"
    bad.write_text(json.dumps(data))
    store = tmp_path / "store"
    # NWChem's harness cannot check a request: the preflight runs the cheapest calculation, which fails, and the
    # run is refused with NWChem's reason and one failure record.
    refused = CliRunner().invoke(main, ["run", str(bad), "--cluster", "sync", "--cache", str(store), "-q"])
    assert refused.exit_code == 2, refused.output
    assert "its cheapest calculation" in refused.output
    assert "There is an error in the specified basis set" in refused.output
    assert len(list((store / "failed").iterdir())) == 1
    # Without the preflight every fragment is submitted, fails, and is listed in a few lines.
    with warnings.catch_warnings(record=True) as warned, dask.config.set({"qcmb_dask.preflight": "never"}):
        warnings.simplefilter("always")
        out = CliRunner().invoke(main, ["run", str(bad), "--cluster", "sync", "--cache", str(store), "-q"])
    assert out.exit_code == 1
    assert not [w for w in warned if "basis-set-exchange" in str(w.message)]  # no PySCF advice for NWChem
    failure_text = out.output[out.output.index("13 fragment calculation(s) failed") :]
    assert len(failure_text.splitlines()) <= 15, failure_text
    assert "There is an error in the specified basis set" in failure_text
    assert "NoneType: None" not in out.output and "Basis may be available" not in out.output

    listed = CliRunner().invoke(main, ["failures", str(bad), "--cache", str(store)])
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert len(lines) == 14 and lines[-1].startswith("13 failure record(s)")
    reason = "-body, nwchem hf/cc-pvdzz) unknown_error: There is an error in the specified basis set"
    assert all(reason in line for line in lines[:13]), listed.output
    label = '["(auto)", [1], [1]]'
    shown = CliRunner().invoke(main, ["failures", "--cache", str(store), "--show", label])
    assert shown.exit_code == 0
    assert "bas_tag_lib: failed opening basis file" in shown.output and "O library cc-pvdzz" in shown.output
    assert len(shown.output.splitlines()) > 100  # the program's whole input and output
    other = tmp_path / "other.json"
    other.write_text(
        json.dumps({**data, "molecule": {**data["molecule"], "geometry": data["molecule"]["geometry"][::-1]}})
    )
    assert "No failure records of" in CliRunner().invoke(main, ["failures", str(other), "--cache", str(store)]).output
    scenario.record(
        "NWChem with a misspelt basis (cc-pvdzz), the README trimer",
        "refused (exit 2) after its cheapest calculation; with qcmb_dask.preflight: never, "
        f"{len(failure_text.splitlines())} lines of failure text; `qcmb-dask failures` lists 13; --show: one whole",
        calls=14,
        stored=0,
    )
