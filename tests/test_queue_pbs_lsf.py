"""PBS's and LSF's readers against recorded ``qstat -f`` and ``bjobs -o`` outputs (``tests/data/queues``), their
commands' exit statuses with fake ``qstat``/``bjobs``/``bsub`` executables on PATH, LSF's driver job, and (marked
``pbs``) ``pbs.read`` against SLURM's ``qstat`` wrapper for a held and a running job."""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from qcmb_dask.clusters import driver_job, queue_state
from qcmb_dask.clusters.batch_systems import SYSTEMS, WARNING_SECONDS, lsf_walltime_seconds
from qcmb_dask.clusters.jobqueue_settings import batch_settings
from qcmb_dask.clusters.queues import ENDED, PENDING, RUNNING, lsf, pbs

from .test_on_slurm import requires_pbs

DATA = Path(__file__).parent / "data" / "queues"


def recorded(name: str) -> str:
    return (DATA / name).read_text()


@pytest.fixture
def fake_bin(tmp_path, monkeypatch):
    """A folder first on PATH; ``fake(name, body)`` writes an executable shell script there."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")

    def fake(name: str, body: str) -> Path:
        path = folder / name
        path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
        path.chmod(0o755)
        return path

    return fake


# --- PBS: qstat -f ------------------------------------------------------------------------------------------------


def test_openpbs_states_map_to_phases_with_the_comment_as_reason():
    found = pbs.parse(recorded("pbs_openpbs.txt"))
    assert {job_id: state.phase for job_id, state in found.items()} == {
        "4101.pbs01": PENDING,  # Q
        "4102.pbs01": PENDING,  # H
        "4103.pbs01": RUNNING,  # R
        "4104.pbs01": RUNNING,  # E: exiting, its node still held
        "4105.pbs01": RUNNING,  # S
        "4106.pbs01": PENDING,  # Q again after a run
        "4107.pbs01": PENDING,  # W
    }
    assert found["4101.pbs01"].reason == (
        "Not Running: Insufficient amount of resource: ncpus (R: 8 A: 2 T: 64) on the vnodes of workq"
    )
    assert found["4102.pbs01"].state == "H" and found["4102.pbs01"].reason.startswith("Job held by chem01")
    assert found["4103.pbs01"].reason == ""  # "Job run at ... on ..." says where, not why
    assert found["4106.pbs01"].preempted and not found["4101.pbs01"].preempted  # run_count = 1: requeued


def test_openpbs_finished_jobs_end_with_their_exit_status():
    found = pbs.parse(recorded("pbs_openpbs_finished.txt"))
    assert all(state.phase == ENDED for state in found.values())
    assert found["4090.pbs01"].reason.startswith("Exit_status 0; Job run at")
    assert found["4091.pbs01"].reason.startswith("Exit_status 271;") and found["4091.pbs01"].reason.endswith("failed")
    assert found["4092[3].pbs01"].state == "X"


def test_folded_values_are_joined_where_they_were_broken():
    text = "Job Id: 77.srv\n    job_state = Q\n    comment = Not Running: Insufficient amo\n\tunt of resource: mem\n"
    assert pbs.parse(text)["77.srv"].reason == "Not Running: Insufficient amount of resource: mem"
    # a folded Variable_List before the comment does not swallow it (recorded: folds split words and PBS_O_ names)
    assert "ncpus (R: 8 A: 2 T: 64)" in pbs.parse(recorded("pbs_openpbs.txt"))["4101.pbs01"].reason


def test_torque_blocks_and_its_completed_state():
    found = pbs.parse(recorded("pbs_torque.txt"))
    done, queued = found["7712.torque01.cluster.example.org"], found["7713.torque01.cluster.example.org"]
    assert done.state == "C" and done.phase == ENDED and done.reason == "Exit_status 0"
    assert queued.phase == PENDING


def test_slurms_qstat_wrapper_recorded_here():
    """What slurm-wlm-torque's ``qstat -f`` printed on this machine: tab-indented attributes, ``Job Id:<TAB>318``;
    a held job is Q (no comment), a cancelled one C."""
    found = pbs.parse(recorded("pbs_slurm_torque.txt"))
    assert (found["318"].state, found["318"].phase) == ("Q", PENDING)
    assert (found["319"].state, found["319"].phase, found["319"].reason) == ("R", RUNNING, "")
    assert pbs.parse(recorded("pbs_slurm_torque_cancelled.txt"))["318"].phase == ENDED


def test_unknown_ids_are_absent_and_finished_ones_ended():
    found = pbs.parse(recorded("pbs_openpbs.txt") + recorded("pbs_openpbs_stderr.txt"))
    assert "4199.pbs01" not in found
    assert found["4090.pbs01"].phase == ENDED and found["4090.pbs01"].reason == "Job has finished"
    assert pbs.parse(recorded("pbs_torque_stderr.txt")) == {}


def test_ids_match_with_or_without_the_server_suffix():
    found = pbs.parse(recorded("pbs_openpbs.txt") + recorded("pbs_torque.txt"))
    asked = ["4101", "4103.pbs01", "4104.pbs01.cluster.example.org", "7713.torque01", "4199.pbs01"]
    answer = pbs.matched(found, asked)
    assert set(answer) == {"4101", "4103.pbs01", "4104.pbs01.cluster.example.org", "7713.torque01"}
    assert answer["4101"].phase == PENDING and answer["4104.pbs01.cluster.example.org"].state == "E"


def test_summary_of_pbs_jobs():
    found = pbs.matched(pbs.parse(recorded("pbs_openpbs.txt")), ["4101", "4103", "4199"])
    line = queue_state.summary(found, ["4101", "4103", "4199"])
    reason = "Not Running: Insufficient amount of resource: ncpus (R: 8 A: 2 T: 64) on the vnodes of workq"
    assert line == f"1 pending ({reason}), 1 running, 1 ended"


def _fake_qstat(fake_bin, exit_status: int, stdout_file: str, stderr_text: str = ""):
    fake_bin(
        "qstat",
        f"""\
        cat '{DATA / stdout_file}'
        printf '%s' '{stderr_text}' >&2
        exit {exit_status}
        """,
    )


def test_read_takes_unknown_and_finished_ids_as_answers(fake_bin):
    _fake_qstat(fake_bin, 153, "pbs_openpbs.txt", "qstat: Unknown Job Id 4199.pbs01\n")
    found = queue_state.states("pbs", ["4101.pbs01", "4199.pbs01"])  # through the pbs row
    assert set(found) == {"4101.pbs01"}

    _fake_qstat(fake_bin, 35, "pbs_slurm_torque.txt", recorded("pbs_openpbs_stderr.txt"))
    found = pbs.read(["4090.pbs01", "319"])
    assert found["4090.pbs01"].phase == ENDED and found["319"].phase == RUNNING


def test_read_takes_the_wrappers_silent_153_as_none_listed(fake_bin):
    fake_bin("qstat", "exit 153\n")  # SLURM's wrapper, asked only about jobs it no longer has
    assert pbs.read(["318"]) == {}


def test_read_is_none_when_qstat_cannot_be_asked(fake_bin, monkeypatch):
    fake_bin("qstat", "echo 'qstat: cannot connect to server pbs01 (errno=111)' >&2\nexit 1\n")
    assert pbs.read(["4101"]) is None
    monkeypatch.setenv("PATH", "/nonexistent")
    assert pbs.read(["4101"]) is None


# --- LSF: bjobs -o ------------------------------------------------------------------------------------------------


def test_bjobs_states_map_to_phases():
    found = lsf.parse(recorded("lsf_bjobs.txt"))
    phases = {found[j].state: found[j].phase for j in found}
    assert phases == {
        "PEND": PENDING,
        "PSUSP": PENDING,
        "WAIT": PENDING,
        "RUN": RUNNING,
        "USUSP": RUNNING,
        "SSUSP": RUNNING,
        "UNKWN": RUNNING,
        "DONE": ENDED,
        "EXIT": ENDED,
        "ZOMBI": ENDED,
    }
    assert len(found) == 12


def test_bjobs_reasons_come_through():
    found = lsf.parse(recorded("lsf_bjobs.txt"))
    assert found["5101"].reason == "New job is waiting for scheduling"
    assert found["5102"].reason == "Job's requirements for reserving resource (mem) not satisfied"  # ";" dropped
    assert found["5103"].reason == "Job was suspended by the user while pending"
    assert found["5104"].reason == "held"  # PSUSP with "-"
    assert found["5106"].reason == "" and found["5110"].reason == ""  # "-": none
    assert "not ended" in found["5109"].reason and found["5109"].alive


def test_bjobs_read_takes_not_found_as_an_answer(fake_bin, tmp_path):
    argv = tmp_path / "argv"
    fake_bin(
        "bjobs",
        f"""\
        for a in "$@"; do printf '%s\\n' "$a"; done > '{argv}'
        grep -E '^(5101|5106)\\|' '{DATA / "lsf_bjobs.txt"}'
        cat '{DATA / "lsf_bjobs_stderr.txt"}' >&2
        exit 255
        """,
    )
    found = queue_state.states("lsf", ["5101", "5106", "5199"])  # through the lsf row
    assert set(found) == {"5101", "5106"} and found["5101"].pending and found["5106"].running
    assert argv.read_text().splitlines() == [
        "-noheader",
        "-o",
        "jobid stat pend_reason delimiter='|'",
        "5101",
        "5106",
        "5199",
    ]


def test_bjobs_read_is_none_when_lsf_does_not_answer(fake_bin):
    fake_bin("bjobs", "echo 'LSF is down. Please wait ...' >&2\nexit 255\n")
    assert lsf.read(["5101"]) is None


# --- LSF: qcmb-dask submit ----------------------------------------------------------------------------------------


def _lsf_driver(tmp_path):
    settings = batch_settings("lsf", {"queue": "normal", "project": "chem-x", "cores": 1, "memory": "2GB"})
    return driver_job.driver_job(
        settings,
        ["hexamer.json", "--cluster", "lsf"],
        walltime="1-00:00:00",
        memory="4G",
        log_directory=str(tmp_path / "logs"),
    )


def test_lsf_driver_header(tmp_path):
    job = _lsf_driver(tmp_path)
    header = [line for line in job.script.splitlines() if line.startswith("#BSUB")]
    assert header == [
        "#BSUB -J qcmb-dask-driver",
        "#BSUB -n 1",
        "#BSUB -M 4GB",
        '#BSUB -R "rusage[mem=4GB]"',
        "#BSUB -W 24:00",
        f"#BSUB -o {tmp_path / 'logs' / 'qcmb-dask-driver-%J.log'}",
        f"#BSUB -wt {WARNING_SECONDS // 60}",
        "#BSUB -wa TERM",
        "#BSUB -q normal",
        "#BSUB -P chem-x",
    ]
    assert job.log.endswith("-%J.log")
    assert lsf_walltime_seconds("24:00") == 86400  # -W reads back as the walltime asked


@pytest.mark.parametrize(
    ("walltime", "memory", "w", "m"), [("02:30", "1.5G", "2:30", "1536MB"), ("90", "500", "1:30", "500MB")]
)
def test_lsf_walltime_and_memory_are_written_as_lsf_reads_them(walltime, memory, w, m):
    header, _ = SYSTEMS["lsf"].driver_header(
        "d", memory=memory, walltime=walltime, log_directory="/l", queue=None, account=None
    )
    assert f"#BSUB -W {w}" in header.splitlines() and f"#BSUB -M {m}" in header.splitlines()
    assert "-q" not in header and "-P" not in header


def test_lsf_driver_is_submitted_on_stdin_and_its_id_read(fake_bin, tmp_path):
    stdin, argv = tmp_path / "stdin", tmp_path / "argv"
    fake_bin(
        "bsub",
        f"""\
        cat > '{stdin}'
        printf '%s\\n' "$#" "$@" > '{argv}'
        echo 'Job <4242> is submitted to queue <normal>.'
        """,
    )
    job = _lsf_driver(tmp_path)
    script = tmp_path / "logs" / "qcmb-dask-driver.sh"
    assert driver_job.submit(job, str(script)) == "4242"
    assert stdin.read_text() == job.script == script.read_text()
    assert argv.read_text().split() == ["0"]  # no path: bsub would run it without reading its #BSUB lines


def test_bsub_refusal_is_told_in_its_own_words(fake_bin, tmp_path):
    fake_bin("bsub", "cat > /dev/null\necho 'Bad time specification. Job not submitted.' >&2\nexit 255\n")
    with pytest.raises(Exception, match="Bad time specification"):
        driver_job.submit(_lsf_driver(tmp_path), str(tmp_path / "logs" / "d.sh"))


@pytest.mark.parametrize(
    ("output", "job_id"),
    [
        ("4242\n", "4242"),
        ("9876.pbs01\n", "9876.pbs01"),
        ("Job <4242> is submitted to queue <normal>.\n", "4242"),
        ("Warning: 2 hosts closed in queue normal\nJob <77> is submitted to default queue <normal>.\n", "77"),
    ],
)
def test_job_id_from_each_submit_commands_output(output, job_id):
    assert driver_job.job_id(output) == job_id


# --- SLURM's qstat wrapper, for real ------------------------------------------------------------------------------


def _wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    return predicate()


@requires_pbs
@pytest.mark.pbs
def test_pbs_read_against_slurms_qstat(tmp_path):
    script = tmp_path / "sleep.sh"
    script.write_text("#!/bin/sh\nsleep 120\n")
    out = f"-o {tmp_path}/out -e {tmp_path}/err".split()
    held = subprocess.run(["qsub", "-h", *out, str(script)], capture_output=True, text=True, check=True)
    running = subprocess.run(["qsub", *out, str(script)], capture_output=True, text=True, check=True)
    ids = [driver_job.job_id(held.stdout), driver_job.job_id(running.stdout)]
    try:
        found = _wait_for(lambda: (f := pbs.read(ids)) and f.get(ids[1]) and f[ids[1]].running and f)
        assert found, f"qstat -f {' '.join(ids)}: {pbs.read(ids)}"
        assert found[ids[0]].phase == PENDING and found[ids[1]].phase == RUNNING
        assert queue_state.states("pbs", ids) == found
    finally:
        subprocess.run([shutil.which("qdel") or "scancel", *ids], capture_output=True)
    # cancelled: C while SLURM still lists them, then absent (the wrapper exits 153 and prints nothing)
    assert _wait_for(lambda: (f := pbs.read(ids)) is not None and not any(f[j].alive for j in f))
