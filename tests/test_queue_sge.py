"""Grid Engine's reader against recorded ``qstat -xml`` and ``qstat -j`` outputs (``tests/data/queues/sge_*``,
from Debian's SGE 8.1.9 that `.ci/start-sge` starts), its commands' exit statuses with a fake ``qstat`` on PATH,
the driver job's header and signal forwarding, and (marked ``sge``) ``sge.read`` against the real SGE."""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from qcmb_dask.clusters import driver_job, queue_state
from qcmb_dask.clusters.batch_systems import SYSTEMS, WARNING_SECONDS
from qcmb_dask.clusters.jobqueue_settings import batch_settings
from qcmb_dask.clusters.queues import ENDED, PENDING, RUNNING, sge

DATA = Path(__file__).parent / "data" / "queues"
#: what `bash .ci/start-sge` writes: SGE_ROOT, SGE_CELL, and SGE's own commands first on PATH
SGE_ENV_FILE = Path("/etc/qcmb-sge.env")


def recorded(name: str) -> str:
    return (DATA / name).read_text()


def sge_environment() -> dict[str, str] | None:
    """The variables SGE's commands need, from .ci/start-sge's file; None where SGE was not set up here."""
    if not SGE_ENV_FILE.exists():
        return None
    env = {}
    for line in SGE_ENV_FILE.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line[len("export ") :].split("=", 1)
            env[key] = value.replace("$PATH", os.environ.get("PATH", ""))
    return env


def _sge_running() -> bool:
    env = sge_environment()
    if env is None:
        return False
    try:
        out = subprocess.run(["qstat", "-f"], env={**os.environ, **env}, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "lx-amd64" in out.stdout  # SGE's qstat, a queue instance listed


SGE_UP = _sge_running()
requires_sge = pytest.mark.skipif(not SGE_UP, reason="no running SGE here (start one: bash .ci/start-sge)")


@pytest.fixture
def sge_env(monkeypatch):
    """SGE's commands first on PATH for this test only: /usr/bin/qsub and qstat stay SLURM's PBS wrappers."""
    for key, value in (sge_environment() or {}).items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def fake_qstat(tmp_path, monkeypatch):
    """``fake(body)`` writes an executable ``qstat`` first on PATH."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")

    def fake(body: str) -> None:
        path = folder / "qstat"
        path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
        path.chmod(0o755)

    return fake


# --- qstat -xml ---------------------------------------------------------------------------------------------------


def test_qstat_xml_states_map_to_phases():
    found = sge.parse(recorded("sge_qstat_xml.txt"))
    assert {job_id: (state.state, state.phase) for job_id, state in found.items()} == {
        "21": ("Eqw", ENDED),  # in error: it will not run until an administrator clears it
        "22": ("r", RUNNING),
        "23": ("r", RUNNING),
        "24": ("s", RUNNING),  # suspended in place: its host and its worker are still there
        "25": ("dr", ENDED),  # being deleted
        "26": ("qw", PENDING),
        "27": ("qw", PENDING),
        "28": ("hqw", PENDING),
    }
    assert found["28"].reason == "Job is in hold state"
    assert not any(state.preempted for state in found.values())


@pytest.mark.parametrize(
    ("state", "phase", "preempted"),
    [
        ("qw", PENDING, False),
        ("hqw", PENDING, False),
        ("hRwq", PENDING, True),  # rescheduled, held
        ("Rq", PENDING, True),
        ("r", RUNNING, False),
        ("t", RUNNING, False),  # being transferred to its host
        ("Rr", RUNNING, True),  # restarted after a node failure or qmod -rj
        ("Rt", RUNNING, True),
        ("s", RUNNING, False),
        ("S", RUNNING, False),  # its queue suspended by a subordinate
        ("T", RUNNING, False),  # suspended at a load threshold
        ("dr", ENDED, False),
        ("dt", ENDED, False),
        ("Eqw", ENDED, False),
        ("z", ENDED, False),
    ],
)
def test_each_sge_state_letter_string(state, phase, preempted):
    job = sge.state_of(state)
    assert (job.phase, job.preempted) == (phase, preempted)


def test_an_array_jobs_tasks_count_as_the_most_alive():
    text = """<?xml version='1.0'?><job_info><queue_info>
      <job_list state="running"><JB_job_number>7</JB_job_number><state>r</state><tasks>1</tasks></job_list>
      </queue_info><job_info>
      <job_list state="pending"><JB_job_number>7</JB_job_number><state>qw</state><tasks>2-4:1</tasks></job_list>
      <job_list state="pending"><JB_job_number>8</JB_job_number><state>qw</state></job_list>
      </job_info></job_info>"""
    found = sge.parse(text)
    assert found["7"].phase == RUNNING and found["8"].phase == PENDING


def test_an_empty_queue_lists_nothing():
    text = "<?xml version='1.0'?>\n<job_info><queue_info>\n</queue_info>\n<job_info>\n</job_info>\n</job_info>\n"
    assert sge.parse(text) == {}


# --- qstat -j: why -------------------------------------------------------------------------------------------------


def test_scheduling_info_of_a_pending_job_without_the_per_queue_lines():
    assert sge.parse_reasons(recorded("sge_qstat_j_pending.txt")) == {
        "27": "All queues dropped because of overload or full"
    }
    assert sge.parse_reasons(recorded("sge_qstat_j_held.txt")) == {
        "28": "All queues dropped because of overload or full; Job is in hold state"
    }


def test_a_job_in_error_gives_its_error_reason():
    assert sge.parse_reasons(recorded("sge_qstat_j_error.txt")) == {
        "21": "error: can't chdir to /nonexistent/dir: No such file or directory"
    }


def test_several_jobs_in_one_qstat_j():
    reasons = sge.parse_reasons(recorded("sge_qstat_j_two.txt"))
    assert set(reasons) == {"21", "27"} and reasons["21"].startswith("error: can't chdir")


def test_no_reason_where_the_scheduler_keeps_none_or_the_job_is_gone():
    text = "==============================================================\njob_number:                 5\n"
    text += "scheduling info:            (Collecting of scheduler job information is turned off)\n"
    assert sge.parse_reasons(text) == {"5": ""}
    assert sge.parse_reasons(
        text.replace("(Collecting of scheduler job information is turned off)", "There are no messages available")
    ) == {"5": ""}
    assert sge.parse_reasons(recorded("sge_qstat_j_gone_stderr.txt")) == {}


def test_a_cluster_of_many_hosts_says_why_without_listing_each():
    text = textwrap.dedent(
        """\
        ==============================================================
        job_number:                 9
        scheduling info:            queue instance "all.q@node01" dropped because it is full
                                    queue instance "all.q@node02" dropped because it is full
                                    (-l h_vmem=64G) cannot run in queue "big.q@n3" because it offers only hc:h_vmem=32G
        """
    )
    assert sge.parse_reasons(text) == {"9": 'queue instance "all.q@node01" dropped because it is full'}


# --- read: the commands and their exit statuses ---------------------------------------------------------------------


def test_read_asks_why_only_for_the_jobs_that_wait_or_will_not_run(fake_qstat, tmp_path):
    asked = tmp_path / "asked"
    fake_qstat(
        f"""\
        if [ "$1" = "-xml" ]; then cat '{DATA / "sge_qstat_xml.txt"}'; exit 0; fi
        echo "$@" >> '{asked}'
        cat '{DATA / "sge_qstat_j_two.txt"}'
        """
    )
    found = sge.read(["21", "23", "27", "28", "99"])
    assert set(found) == {"21", "23", "27", "28"}  # 99: no longer listed, so absent
    assert asked.read_text().split() == ["-j", "21,27,28"]
    assert found["27"].reason == "All queues dropped because of overload or full"
    assert found["21"].phase == ENDED and found["21"].reason.startswith("error: can't chdir")
    assert found["23"].reason == "" and found["28"].reason == "Job is in hold state"  # not in what qstat -j said
    assert queue_state.summary(found, ["21", "23", "27", "99"]) == (
        "1 pending (All queues dropped because of overload or full), 1 running, 2 ended"
    )


def test_read_keeps_the_states_when_the_jobs_are_gone_before_qstat_j(fake_qstat):
    fake_qstat(
        f"""\
        if [ "$1" = "-xml" ]; then cat '{DATA / "sge_qstat_xml.txt"}'; exit 0; fi
        cat '{DATA / "sge_qstat_j_gone_stderr.txt"}' >&2
        exit 1
        """
    )
    found = sge.read(["27"])
    assert found["27"].phase == PENDING and found["27"].reason == ""


@pytest.mark.parametrize(
    "body",
    [
        "echo 'error: commlib error: got select error (Connection refused)' >&2\nexit 1\n",  # qmaster down
        "echo '<?xml version' ; exit 0\n",  # cut short
    ],
)
def test_read_is_none_when_sge_does_not_answer(fake_qstat, body):
    fake_qstat(body)
    assert sge.read(["27"]) is None


def test_read_is_none_without_qstat(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert sge.read(["27"]) is None


def test_the_sge_row_reads_with_this_module():
    assert SYSTEMS["sge"].read_states is sge.read
    assert "sge" in driver_job.DRIVER_SYSTEMS


# --- qcmb-dask submit: the driver job ------------------------------------------------------------------------------


def _sge_driver(tmp_path, **kwargs):
    settings = batch_settings("sge", {"queue": "all.q", "project": "chem-x", "cores": 1, "memory": "2GB", **kwargs})
    return driver_job.driver_job(
        settings,
        ["hexamer.json", "--cluster", "sge"],
        walltime="1-00:00:00",
        memory="4G",
        log_directory=str(tmp_path / "logs"),
    )


def test_sge_driver_header(tmp_path):
    job = _sge_driver(tmp_path)
    header = [line for line in job.script.splitlines() if line.startswith("#$")]
    soft = 86400 - WARNING_SECONDS
    assert header == [
        "#$ -N qcmb-dask-driver",
        "#$ -cwd",
        "#$ -j y",
        f"#$ -o {tmp_path / 'logs' / 'qcmb-dask-driver.log'}",
        "#$ -S /bin/bash",
        "#$ -V",
        "#$ -notify",
        "#$ -l h_vmem=4G",
        f"#$ -l h_rt=24:00:00,s_rt={soft // 3600}:{soft // 60 % 60:02d}:00",
        "#$ -q all.q",
        "#$ -P chem-x",
    ]
    assert job.log == str(tmp_path / "logs" / "qcmb-dask-driver.log")


@pytest.mark.parametrize(
    ("walltime", "memory", "limits", "vmem"),
    [("00:04:00", "1.5GiB", "h_rt=0:04:00,s_rt=0:02:00", "1536M"), ("90", "500", "h_rt=1:30:00,s_rt=1:25:00", "500M")],
)
def test_sge_walltime_and_memory_are_written_as_sge_reads_them(walltime, memory, limits, vmem):
    header, _ = SYSTEMS["sge"].driver_header(
        "d", memory=memory, walltime=walltime, log_directory="/l", queue=None, account=None
    )
    assert f"#$ -l {limits}" in header.splitlines() and f"#$ -l h_vmem={vmem}" in header.splitlines()
    assert "-q" not in header and "-P" not in header


def test_the_sge_driver_turns_sges_warnings_into_sigterm(tmp_path):
    """SGE sends SIGUSR1 (s_rt) or SIGUSR2 (-notify, before qdel's kill) to every process of the job: the driver
    ignores them and gets SIGTERM from its shell, the signal it ends cleanly on."""
    script = _sge_driver(tmp_path).script
    assert "exec " in script and "trap '' USR1 USR2" in script
    driver = tmp_path / "driver.py"
    driver.write_text(
        textwrap.dedent(
            f"""\
            import signal, sys, time
            def term(*_):
                print("TERM", signal.getsignal(signal.SIGUSR1) is signal.SIG_IGN, flush=True)
                sys.exit(3)
            signal.signal(signal.SIGTERM, term)
            open({str(tmp_path / "ready")!r}, "w").close()
            time.sleep(60)
            """
        )
    )
    tail = script.split("cd ", 1)[1].split("\n", 1)[1]  # after the header and the cd
    real = tail.replace(tail.split("exec ", 1)[1].split(")", 1)[0], f"python3 {driver}")
    (tmp_path / "job.sh").write_text(real)
    job = subprocess.Popen(
        ["bash", str(tmp_path / "job.sh")], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.time() + 20
    while not (tmp_path / "ready").exists() and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(job.pid, 10)  # SIGUSR1 to the whole job, as SGE's shepherd sends it
    out, _ = job.communicate(timeout=20)
    assert out.split() == ["TERM", "True"] and job.returncode == 3


# --- the real SGE -------------------------------------------------------------------------------------------------


def _wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    return predicate()


@requires_sge
@pytest.mark.sge
def test_sge_read_against_the_real_sge(tmp_path, sge_env):
    def qsub(*flags: str) -> str:
        out = f"-terse -b y -j y -o {tmp_path} -N qcmb-read-test".split()
        done = subprocess.run(["qsub", *out, *flags, "sleep", "120"], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    ids = [qsub("-h"), qsub()]
    held, running = ids
    try:
        found = _wait_for(lambda: (f := sge.read(ids)) and f.get(running) and f[running].running and f)
        assert found, f"qstat -xml: {sge.read(ids)}"
        assert found[held].state == "hqw" and found[held].phase == PENDING
        assert "Job is in hold state" in found[held].reason
        assert found[running].state in ("t", "r") and found[running].reason == ""  # t: on its way to its host
        assert {j: s.phase for j, s in queue_state.states("sge", ids).items()} == {held: PENDING, running: RUNNING}
    finally:
        subprocess.run(["qdel", *ids], capture_output=True)
    # deleted: dr (ended) while SGE still lists it, then absent
    assert _wait_for(lambda: (f := sge.read(ids)) is not None and not any(f[j].alive for j in f))
    assert _wait_for(lambda: sge.read(ids) == {})
