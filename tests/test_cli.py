"""qcmb-dask, as a user on a terminal runs it: the installed command for a real run, click's runner for the rest."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import qcmb_dask
from qcmb_dask.cli import main

from .conftest import assert_same_result, mbe_input, qcmanybody_reference
from .fake_programs import DimersFailHarness, FaultyHarness, calls

ROOT = Path(__file__).resolve().parent.parent
TRIMER = str(ROOT / "examples" / "water-trimer.json")


def qcmb_dask_command() -> list:
    """The installed console script, or the module where the package is used from a source tree."""
    script = Path(sys.executable).with_name("qcmb-dask")
    return [str(script)] if script.exists() else [sys.executable, "-m", "qcmb_dask.cli"]


@pytest.mark.slow
def test_run_writes_qcmanybodys_answer_and_shows_progress(tmp_path):
    out = subprocess.run(
        [*qcmb_dask_command(), "run", TRIMER, "--no-cache", "--out", "r.json", "--report", "report.html"],
        cwd=tmp_path,
        env={**os.environ, "DASK_QCMB_DASK__LOCAL__DASHBOARD_ADDRESS": ":0"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "Dask dashboard at http://" in out.stderr
    assert "many-body progress page at http://" in out.stderr and "/qcmb" in out.stderr
    assert "3-body result ready (13 calculations)" in out.stderr
    assert "13 calculations" in out.stderr  # the plan first
    from qcmanybody.models.v2 import ManyBodyResult

    result = ManyBodyResult(**json.loads((tmp_path / "r.json").read_text()))
    assert_same_result(result, qcmanybody_reference(json.loads(Path(TRIMER).read_text())))
    table = out.stdout.splitlines()
    assert table[0].split() == ["BSSE", "n-body", "IE", "(Eh)", "IE", "(kcal/mol)"]
    cp3 = next(line for line in table if line.split()[:2] == ["CP", "3"])
    assert float(cp3.split()[2]) == pytest.approx(result.properties.cp_corrected_interaction_energy, abs=1e-10)
    assert (tmp_path / "report.html").stat().st_size > 1000


def test_plan_prints_the_table_without_running_anything():
    out = CliRunner().invoke(main, ["plan", TRIMER])
    assert out.exit_code == 0
    assert "13 calculations" in out.output and "2-body calculations:      9" in out.output


def test_bad_input_exits_2_with_the_reason(tmp_path):
    bad = tmp_path / "bad.json"
    data = mbe_input(2)
    data["specification"]["specification"]["(auto)"]["model"]["basis"] = "no-such-basis"
    bad.write_text(json.dumps(data))
    out = CliRunner().invoke(main, ["run", str(bad), "--cluster", "sync", "--no-cache"])
    assert out.exit_code == 2
    assert "no-such-basis" in out.output
    out = CliRunner().invoke(main, ["run", TRIMER, "--cache", str(tmp_path), "--no-cache"])
    assert out.exit_code == 2 and "not both" in out.output


def test_failed_fragments_exit_1_naming_them(tmp_path):
    qcmb_dask.programs.register([DimersFailHarness()])
    failing = tmp_path / "failing.json"
    failing.write_text(json.dumps(mbe_input(3, keywords={"bsse_type": "nocp"}, program="dimers-fail")))
    out = CliRunner().invoke(main, ["run", str(failing), "--cluster", "sync", "--no-cache", "-q"])
    assert out.exit_code == 1
    assert "the run failed" in out.output and "convergence_error" in out.output
    out = CliRunner().invoke(
        main, ["run", str(failing), "--cluster", "sync", "--no-cache", "-q", "--on-error", "partial"]
    )
    assert out.exit_code == 1 and "complete through 1-body" in out.output


def test_programs_job_script_and_cache(tmp_path):
    out = CliRunner().invoke(main, ["programs"])
    assert out.exit_code == 0 and any(line.split()[:2] == ["pyscf", "usable"] for line in out.output.splitlines())
    out = CliRunner().invoke(main, ["job-script", "--cluster", "slurm", "--cluster-option", "account=chem42"])
    assert out.exit_code == 0 and "#SBATCH -A chem42" in out.output
    out = CliRunner().invoke(main, ["job-script", "--cluster-option", "partition=x"])
    assert out.exit_code == 2 and "not a setting" in out.output

    store = tmp_path / "store"
    out = CliRunner().invoke(main, ["run", TRIMER, "--cluster", "sync", "--cache", str(store), "-q"])
    assert out.exit_code == 0, out.output
    out = CliRunner().invoke(main, ["cache", "info", "--cache", str(store)])
    assert "13 result(s)" in out.output
    assert "measured: pyscf hf 6-31g energy: the cost model's estimate x" in out.output
    assert "(13 calculations)" in out.output
    out = CliRunner().invoke(main, ["plan", TRIMER, "--cache", str(store)])
    assert "from 13 earlier calculations like these" in out.output
    out = CliRunner().invoke(main, ["cache", "clear", "--cache", str(store), "--yes"])
    assert "Removed 13 result(s) and the measured durations" in out.output
    out = CliRunner().invoke(main, ["cache", "info", "--cache", str(store)])
    assert "0 result(s)" in out.output and "measured" not in out.output


def test_an_output_path_that_cannot_be_written_exits_2_before_anything_is_computed(tmp_path):
    """A typo in --out or --report once discarded the whole finished run; now it costs nothing."""
    log = tmp_path / "calls.log"
    qcmb_dask.programs.register([FaultyHarness(extras={"log": str(log)})])
    data = tmp_path / "trimer.json"
    data.write_text(json.dumps(mbe_input(3, program="faulty")))
    for option, path, message in (
        ("--out", "/no/such/dir/r.json", "the directory '/no/such/dir' does not exist"),
        ("--report", str(tmp_path / "missing" / "r.html"), "does not exist"),
        ("--out", str(tmp_path), "is a directory"),
    ):
        out = CliRunner().invoke(main, ["run", str(data), "--cluster", "sync", "--no-cache", "-q", option, path])
        assert out.exit_code == 2, out.output
        assert message in out.output
    assert calls(log) == 0


def test_cache_clear_deletes_only_what_the_store_wrote(tmp_path):
    """A user's files beside or inside the store survive; a directory that is not a store is refused."""
    project = tmp_path / "project"
    (project / "ab").mkdir(parents=True)
    (project / "ab" / "notes.json").write_text('{"my": "notes"}')
    (project / "failed").mkdir()
    (project / "failed" / "thesis.tex").write_text("\\documentclass{article}")
    out = CliRunner().invoke(main, ["cache", "clear", "--cache", str(project), "--yes"])
    assert out.exit_code == 2 and "not a qcmb_dask result store" in out.output
    assert (project / "ab" / "notes.json").exists() and (project / "failed" / "thesis.tex").exists()

    store = tmp_path / "store"
    qcmb_dask.programs.register([DimersFailHarness()])
    failing = tmp_path / "failing.json"
    failing.write_text(json.dumps(mbe_input(3, keywords={"bsse_type": "nocp"}, program="dimers-fail")))
    out = CliRunner().invoke(main, ["run", str(failing), "--cluster", "sync", "--cache", str(store), "-q"])
    assert out.exit_code == 1  # 4 results stored, 3 failure records kept
    assert len(list((store / "failed").glob("*.json"))) == 3
    user_files = [store / "ab" / "notes.json", store / "failed" / "thesis.tex", store / "README.md"]
    for path in user_files:
        path.parent.mkdir(exist_ok=True)
        path.write_text("mine")
    out = CliRunner().invoke(main, ["cache", "clear", "--cache", str(store), "--yes"])
    assert out.exit_code == 0 and "Removed 4 result(s)" in out.output
    assert all(path.read_text() == "mine" for path in user_files)
    assert list((store / "failed").glob("*.json")) == []
    assert sorted(p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file()) == sorted(
        [".qcmb-dask-store", "README.md", "ab/notes.json", "failed/thesis.tex"]
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum, status, ninputs", [(signal.SIGTERM, 143, 1), (signal.SIGHUP, 129, 1), (signal.SIGTERM, 143, 2)]
)
def test_sigterm_and_sighup_take_the_ctrl_c_path_and_exit_128_plus_the_signal(tmp_path, signum, status, ninputs):
    store = tmp_path / "store"
    inputs = [str(ROOT / "examples" / "water-hexamer.json"), str(ROOT / "examples" / "water-trimer.json")][:ninputs]
    proc = subprocess.Popen(
        [*qcmb_dask_command(), "run", *inputs, "--cluster", "sync", "--cache", str(store), "-q"],
        stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 120
    while not list(store.glob("??/*.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert f"{signal.Signals(signum).name} received" in err
    assert "run the same command again" in err or "run again to go on" in err
    assert "Traceback" not in err
    assert list(store.glob("??/*.json"))  # what finished is kept


def test_a_script_whose_stderr_is_a_file_logs_the_plan_the_levels_and_the_summary(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        "import qcmb_dask\n"
        "if __name__ == '__main__':\n"
        f"    qcmb_dask.compute({TRIMER!r}, 'sync', cache={str(tmp_path / 'store')!r})\n"
    )
    log = tmp_path / "job.err"
    with open(log, "w") as stderr:  # a batch job's log: nothing watches
        subprocess.run([sys.executable, str(script)], stderr=stderr, check=True, timeout=300)
    text = log.read_text()
    assert "INFO Many-body expansion: 3 fragments" in text  # the plan
    assert "INFO qcmb_dask: 3-body result ready (13 calculations): CP IE -0.00816" in text
    assert f"INFO qcmb_dask: 13 fragment(s) computed, 0 taken from the store at {tmp_path / 'store'}" in text
    assert "INFO qcmb_dask: done in" in text


def test_run_takes_a_directory_and_a_yaml_of_several_inputs(tmp_path):
    import yaml

    frames = []
    for step in range(3):
        data = mbe_input(2, keywords={"bsse_type": "nocp"})
        data["molecule"]["geometry"][5] += 0.3 * step
        frames.append(data)
    folder = tmp_path / "scan"
    folder.mkdir()
    for step, data in enumerate(frames):
        (folder / f"frame{step}.json").write_text(json.dumps(data))
    (folder / "frame9.json").write_text("{ not json")
    out = CliRunner().invoke(
        main, ["run", str(folder), "--cluster", "sync", "--no-cache", "-q", "--out", str(tmp_path / "r")]
    )
    assert out.exit_code == 1, out.output
    assert (
        "1 of 4 inputs failed" in out.output and "frame9.json: Invalid many-body input: could not parse" in out.output
    )
    assert f"{folder / 'frame9.json'}  failed" in out.output
    written = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert written == ["0001-frame0.json", "0002-frame1.json", "0003-frame2.json"]
    saved = qcmb_dask.load_result(tmp_path / "r" / "0002-frame1.json")
    assert_same_result(saved, qcmanybody_reference(frames[1]))

    stream = tmp_path / "scan.yaml"
    stream.write_text(yaml.safe_dump_all(frames))
    out = CliRunner().invoke(main, ["run", str(stream), "--cluster", "sync", "--no-cache", "-q"])
    assert out.exit_code == 0, out.output
    assert [line.split()[0] for line in out.output.splitlines()[-3:]] == [f"{stream}#{n}" for n in (1, 2, 3)]


def test_cache_and_no_cache_together_are_refused_for_several_inputs_too():
    out = CliRunner().invoke(
        main, ["run", str(ROOT / "examples" / "water-trimer.json"), str(ROOT / "examples" / "water-hexamer.json"),
               "--cache", "somewhere", "--no-cache"],
    )  # fmt: skip
    assert out.exit_code == 2 and "--cache PATH or --no-cache, not both" in out.output


def test_submit_of_a_molecule_file_says_how_to_follow_it_with_its_model_flags(tmp_path, monkeypatch):
    """The status line printed after submitting names the flags that made the input (a fake sbatch on PATH: it
    prints a job id, as ``sbatch --parsable`` does)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text("#!/bin/sh\necho 4242\n")
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(
        main, ["submit", str(ROOT / "examples" / "water-trimer.xyz"), "--cache", str(tmp_path / "store"),
               "--method", "hf", "--basis", "sto-3g", "--bsse", "nocp"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "Submitted driver job 4242" in out.output
    assert "--method hf --basis sto-3g --bsse nocp --cache" in out.output
