"""Batch-cluster settings without a batch system: layers, job shape, walltime -> lifetime, job scripts,
and bad arguments refused before anything is submitted."""

import contextlib

import dask
import pytest

import qcmb_dask
from qcmb_dask import compat
from qcmb_dask.clusters import jobqueue_settings as bs
from qcmb_dask.errors import InvalidArgument, SettingWarning

from .conftest import mbe_input


def test_every_shipped_profile_is_valid_for_its_system():
    for system in bs.SYSTEMS:
        settings = bs.batch_settings(system)
        assert settings.system == system
        assert settings.kwargs["job_name"] == "qcmb-dask"
        assert settings.workers_per_job == 8  # cores 8, one core per fragment by default


def test_later_layers_win_profile_then_dask_config_then_cluster_options():
    assert bs.batch_settings("slurm").kwargs["queue"] is None  # the profile
    with dask.config.set({"jobqueue.slurm.queue": "from-jobqueue", "jobqueue.slurm.account": "chem42"}):
        settings = bs.batch_settings("slurm")
        assert settings.kwargs["queue"] == "from-jobqueue"
        assert settings.kwargs["account"] == "chem42"
        with dask.config.set({"qcmb_dask.jobqueue.slurm.queue": "from-qcmb-dask"}):
            assert bs.batch_settings("slurm").kwargs["queue"] == "from-qcmb-dask"
            settings = bs.batch_settings("slurm", {"queue": "from-call"})
            assert settings.kwargs["queue"] == "from-call"
            assert settings.kwargs["account"] == "chem42"


def test_a_profile_file_names_its_system(tmp_path):
    profile = tmp_path / "mysite.yaml"
    profile.write_text("jobqueue:\n  pbs:\n    cores: 4\n    memory: 8GiB\n    queue: workq\n")
    settings = bs.batch_settings(str(profile))
    assert settings.system == "pbs"
    assert settings.kwargs["queue"] == "workq"
    assert settings.workers_per_job == 4
    assert settings.walltime_s == 1800  # dask-jobqueue's PBS default, as no layer sets one


def test_bad_profiles_and_settings_are_refused_with_the_reason(tmp_path):
    two = tmp_path / "two.yaml"
    two.write_text("jobqueue:\n  pbs: {cores: 1}\n  slurm: {cores: 1}\n")
    with pytest.raises(ValueError, match="exactly one batch system"):
        bs.batch_settings(str(two))
    with pytest.raises(ValueError, match="no such profile file"):
        bs.batch_settings(str(tmp_path / "missing.yaml"))
    with pytest.raises(ValueError, match=r"'partition' is not a setting .*SLURMCluster"):
        bs.batch_settings("slurm", {"partition": "compute"})
    with pytest.raises(ValueError, match="did you mean job_extra_directives"):
        bs.batch_settings("slurm", {"job-extras": []})
    with pytest.raises(ValueError, match="does not fit"):
        bs.batch_settings("slurm", {"memory": "8GiB"}, memory_per_task=4)


def test_what_qcmb_dask_owns_is_overridden_with_a_warning_and_old_names_translated():
    with pytest.warns(SettingWarning, match=r"processes=4 from cluster_options is not used.*runs 8 worker"):
        assert bs.batch_settings("slurm", {"processes": 4}).kwargs["processes"] == 8
    with pytest.warns(SettingWarning, match=r"does not divide the job's 8 cores.*2 worker\(s\) per job, 2 core"):
        assert bs.batch_settings("slurm", threads_per_task=3).workers_per_job == 2
    with pytest.warns(SettingWarning, match=r"more than the job's 8 cores \(.*\): each fragment gets 8"):
        assert bs.batch_settings("slurm", threads_per_task=16).threads_per_task == 8
    with pytest.warns(SettingWarning, match="'extra' is dask-jobqueue's old name for 'worker_extra_args'"):
        settings = bs.batch_settings("slurm", {"extra": ["--resources", "GPU=1"], "job-extra": ["--qos=debug"]})
    assert settings.kwargs["worker_extra_args"][:2] == ["--resources", "GPU=1"]
    assert settings.kwargs["job_extra_directives"] == ["--qos=debug"]


@contextlib.contextmanager
def site_config(tmp_path, monkeypatch, text: str, name: str = "site.yaml"):
    """A site's Dask config as sites install it: a YAML file in a directory on Dask's search path (what
    DASK_CONFIG=<dir> or /etc/dask give), and its values in the config as Dask loads them at import."""
    import yaml

    directory = tmp_path / "etc-dask"
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(text)
    monkeypatch.setattr(dask.config, "paths", [*dask.config.paths, str(directory)])
    compat.import_jobqueue()  # its defaults first, as at a site: leaving the context restores them
    sections = yaml.safe_load(text)["jobqueue"]  # set key by key: dask.config.set of a dict replaces the subtree
    with dask.config.set({f"jobqueue.{system}.{k}": v for system, keys in sections.items() for k, v in keys.items()}):
        yield directory / name


def test_the_sites_dask_config_wins_over_the_profile_whatever_its_values(tmp_path, monkeypatch):
    text = (
        "jobqueue:\n  slurm:\n    walltime: '00:30:00'\n    queue: debug\n    processes: 1\n"
        "    job-extra: ['--comment=site']\n"
    )
    with site_config(tmp_path, monkeypatch, text) as path, pytest.warns(SettingWarning) as seen:
        settings = bs.batch_settings("slurm")
        script = qcmb_dask.job_script("slurm")
    assert {str(w.message).split(":")[0] for w in seen} >= {f"dask config {path}"}
    # 00:30:00 is dask-jobqueue's own default, and the site's: the site wins over the shipped profile's 01:00:00
    assert settings.kwargs["walltime"] == "00:30:00" and settings.walltime_s == 1800
    assert settings.kwargs["queue"] == "debug"
    assert settings.kwargs["job_extra_directives"] == ["--comment=site"]
    assert settings.kwargs["processes"] == 8  # overridden, with the warning
    assert settings.sources["walltime"] == f"dask config {path}"
    assert settings.sources["cores"].startswith("profile ")
    assert "#SBATCH -t 00:30:00" in script and "#SBATCH -p debug" in script
    assert f"walltime = '00:30:00'  (dask config {path})" in script


def test_an_environment_variable_equal_to_the_default_is_still_the_users(monkeypatch):
    monkeypatch.setenv("DASK_JOBQUEUE__SLURM__WALLTIME", "00:30:00")
    settings = bs.batch_settings("slurm")
    assert settings.kwargs["walltime"] == "00:30:00"
    assert settings.sources["walltime"] == "environment (DASK_JOBQUEUE__...)"
    with dask.config.set({"qcmb_dask.jobqueue.slurm.walltime": "02:00:00"}):
        assert bs.batch_settings("slurm").kwargs["walltime"] == "02:00:00"  # qcmb_dask's own section is later
        assert bs.batch_settings("slurm", {"walltime": "00:05:00"}).kwargs["walltime"] == "00:05:00"  # the call, last


def test_scratch_settings_reach_qcengines_task_config():
    settings = bs.batch_settings("slurm", {"scratch_directory": "/local/scratch", "scratch-messy": True})
    assert settings.task_config == {"scratch_directory": "/local/scratch", "scratch_messy": True}
    assert "scratch_directory" not in settings.kwargs  # not a dask-jobqueue setting
    from qcmb_dask.clusters.resources import Resources

    config = Resources(8, 1, 4.0, settings.task_config).task_config(retries=2)
    assert config["scratch_directory"] == "/local/scratch" and config["scratch_messy"] is True
    with dask.config.set({"qcmb_dask.scratch-directory": "/tmp/qc"}):
        assert Resources(1, 1, None).task_config()["scratch_directory"] == "/tmp/qc"


def test_a_job_is_cut_into_one_fragment_workers_that_share_its_memory():
    settings = bs.batch_settings("slurm", {"cores": 8, "memory": "32GiB"}, threads_per_task=2)
    assert settings.workers_per_job == 4
    assert settings.kwargs["processes"] == 4
    assert settings.memory_per_task == pytest.approx(0.8 * 8)
    # dask-jobqueue would give each worker 2 threads: one fragment at a time, QCEngine told 2 cores
    assert settings.kwargs["worker_extra_args"][:2] == ["--nthreads", "1"]
    assert settings.threads_per_task == 2


@pytest.mark.parametrize(
    "walltime, system, seconds",
    [
        ("01:00:00", "slurm", 3600),
        ("2-00:30:00", "slurm", 2 * 86400 + 1800),
        ("30:00", "slurm", 1800),  # SLURM: minutes:seconds
        ("30:00", "lsf", 30 * 3600),  # LSF -W: hours:minutes
        ("90", "slurm", 5400),  # minutes
        (None, "slurm", None),
    ],
)
def test_walltimes_are_read_as_each_batch_system_reads_them(walltime, system, seconds):
    assert bs.parse_walltime(walltime, system) == seconds


def test_workers_retire_before_the_walltime_staggered():
    lifetime, stagger = bs.lifetime_for(3600)
    assert lifetime + stagger == 3600 - 300  # 5 minutes' margin at most
    assert stagger == 180
    lifetime, stagger = bs.lifetime_for(20)
    assert lifetime + stagger == 18 and stagger == 1
    with pytest.raises(ValueError, match="no time to work"):
        bs.lifetime_for(2)
    # a --lifetime the user gives is kept, not doubled, and then the workers are not walltime-aware
    settings = bs.batch_settings("slurm", {"worker_extra_args": ["--lifetime", "50m"]})
    assert settings.kwargs["worker_extra_args"].count("--lifetime") == 1
    assert settings.margin_s is None and "--preload" not in settings.kwargs["worker_extra_args"]


def test_walltime_margin_is_two_percent_between_5_and_60_seconds_or_the_setting():
    assert bs.walltime_margin(3600) == 60
    assert bs.walltime_margin(600) == 12
    assert bs.walltime_margin(100) == 5
    with dask.config.set({"qcmb_dask.batch.walltime-margin": 120}):
        assert bs.batch_settings("slurm", {"walltime": "02:00:00"}).margin_s == 120


def test_walltime_settings_that_cannot_work_are_named_with_where_they_came_from():
    too_long = r"walltime '00:05:00' \(from cluster_options\) is 300 s, no longer than"
    with dask.config.set({"qcmb_dask.batch.walltime-margin": 600}), pytest.raises(ValueError, match=too_long):
        bs.batch_settings("slurm", {"walltime": "00:05:00"})
    not_seconds = "walltime-margin='soon' is not a number"
    with dask.config.set({"qcmb_dask.batch.walltime-margin": "soon"}), pytest.raises(ValueError, match=not_seconds):
        bs.batch_settings("slurm", {})
    # a warning signal asked for before the job starts
    with pytest.raises(ValueError, match=r"signal 900 s before the walltime.*'00:10:00' \(from cluster_options\)"):
        bs.batch_settings("slurm", {"walltime": "00:10:00", "job_extra_directives": ["--signal=B:TERM@900"]})
    with pytest.raises(ValueError, match="signal 1200 s before"):
        bs.batch_settings("lsf", {"walltime": "00:10", "job_extra_directives": ["-wt '20'"]})
    bs.batch_settings("slurm", {"walltime": "00:10:00", "job_extra_directives": ["--signal=TERM@60"]})
    # a lifetime the batch system cuts short
    with pytest.warns(SettingWarning, match=r"--lifetime 7200 s .*not shorter than the walltime"):
        bs.batch_settings("slurm", {"walltime": "01:00:00", "worker_extra_args": ["--lifetime=2h"]})


def test_job_script_shows_what_would_be_submitted():
    script = qcmb_dask.job_script(
        "slurm",
        threads_per_task=2,
        cluster_options={"account": "chem42", "job_script_prologue": ["module load anaconda3"], "name": "w6"},
    )
    assert "#SBATCH -J w6" in script
    assert "#SBATCH -A chem42" in script
    assert "#SBATCH --cpus-per-task=8" in script
    assert "#SBATCH -t 01:00:00" in script
    assert "module load anaconda3" in script
    assert "--nworkers 4" in script and script.rindex("--nthreads 1") > script.index("--nthreads 2")
    # walltime-aware workers: the job exports its deadline and the workers load the walltime preload
    assert "export QCMB_DASK_JOB_DEADLINE=$(( $(date +%s) + 3600 ))" in script
    assert "export QCMB_DASK_JOB_MARGIN=60" in script
    assert "--preload qcmb_dask.worker.walltime" in script and "--lifetime" not in script
    with dask.config.set({"qcmb_dask.batch.walltime-aware": False}):
        assert "--lifetime 3120s --lifetime-stagger 180s" in qcmb_dask.job_script("slurm")
    assert "#PBS -l walltime=01:00:00" in qcmb_dask.job_script("pbs")


def test_batch_arguments_are_checked_before_anything_is_submitted():
    mbin = mbe_input(2)
    with pytest.raises(ValueError, match="jobs=N .* or adapt=.*not both"):
        qcmb_dask.compute(mbin, "slurm", jobs=2, adapt=(1, 2))
    with pytest.raises(ValueError, match="adapt="):
        qcmb_dask.compute(mbin, "slurm", adapt=(3, 1))
    with pytest.raises(ValueError, match="jobs=0"):
        qcmb_dask.compute(mbin, "slurm", jobs=0)
    with pytest.raises(ValueError, match="n_workers is for the embedded cluster"):
        qcmb_dask.compute(mbin, "slurm", n_workers=4)
    with pytest.raises(ValueError, match="apply to batch clusters"):
        qcmb_dask.compute(mbin, "sync", jobs=2)
    with pytest.raises(ValueError, match="not a setting"):
        qcmb_dask.compute(mbin, "slurm", cluster_options={"partition": "x"})


def test_without_jobs_or_adapt_every_calculation_gets_a_worker_up_to_max_jobs():
    assert bs.jobs_for(13, 1, 10) == 10
    assert bs.jobs_for(13, 8, 10) == 2
    assert bs.jobs_for(0, 8, 10) == 1


def test_ctrl_c_stays_a_keyboard_interrupt_after_dask_jobqueue_is_imported():
    """dask-jobqueue's import sets SIGINT to sys.exit(): Ctrl-C would end a run with status 0."""
    import subprocess
    import sys

    check = (
        "import signal, dask_jobqueue, qcmb_dask; qcmb_dask.job_script('slurm'); "
        "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, signal.getsignal(signal.SIGINT)"
    )
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_a_batch_cluster_can_be_prepared_from_a_thread_that_is_not_the_main_one():
    """dask-jobqueue's import sets a signal handler, which only the main thread may do."""
    import subprocess
    import sys

    check = (
        "import threading, qcmb_dask; out = []\n"
        "t = threading.Thread(target=lambda: out.append(qcmb_dask.job_script('slurm'))); t.start(); t.join()\n"
        "assert out and '#SBATCH' in out[0]"
    )
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_the_driver_job_keeps_the_workers_prologue_but_not_their_deadline(tmp_path):
    from qcmb_dask.clusters.driver_job import driver_job

    settings = bs.batch_settings("slurm", {"job_script_prologue": ["module load chem"]})
    assert any("QCMB_DASK_JOB_DEADLINE" in line for line in settings.kwargs["job_script_prologue"])
    job = driver_job(settings, ["input.json"], walltime="1-00:00:00", memory="4G", log_directory=str(tmp_path))
    assert "module load chem" in job.script and "QCMB_DASK_JOB" not in job.script


def test_sge_jobs_ask_for_their_cores_as_slots_and_memory_per_slot():
    settings = bs.batch_settings("sge", {"cores": 2, "memory": "3GiB"})
    assert "-pe smp 2" in settings.kwargs["job_extra_directives"]
    assert settings.kwargs["resource_spec"] == "h_vmem=1536M"
    # what a site or a user asks for is theirs, as they wrote it
    options = {"cores": 4, "memory": "8GiB", "job_extra_directives": ["-pe threaded 4"], "resource_spec": "h_vmem=3G"}
    settings = bs.batch_settings("sge", options)
    assert settings.kwargs["job_extra_directives"] == ["-pe threaded 4"]
    assert settings.kwargs["resource_spec"] == "h_vmem=3G"


def test_a_fragment_longer_than_any_jobs_walltime_is_refused_before_submission(tmp_path):
    """MP2/aug-cc-pVTZ water trimers: the cost model puts each near three minutes; a 2-minute walltime cannot
    hold one. Nothing is submitted (there is no SLURM needed to refuse it)."""
    mbin = mbe_input(3, specs={"(auto)": ("mp2", "aug-cc-pvtz")})
    options = {"walltime": "00:02:00", "log_directory": str(tmp_path / "logs")}
    with pytest.raises(InvalidArgument) as refused:
        qcmb_dask.compute(mbin, "slurm", cluster_options=options, cache=tmp_path / "store", progress=False)
    message = str(refused.value)
    assert "is estimated at" in message and "walltime of 00:02:00 (from cluster_options)" in message
    assert "longer-than-walltime: warn" in message
    assert not (tmp_path / "logs").exists()  # no job script was written, nothing submitted
    with dask.config.set({"qcmb_dask.batch.longer-than-walltime": "warn"}):
        from qcmb_dask.clusters.jobqueue import JobqueueBackend
        from qcmb_dask.options import Options

        backend = JobqueueBackend("slurm")
        backend.check(Options.from_call(cluster_options=options), 7)
        with pytest.warns(SettingWarning, match="is estimated at"):
            backend.consider(1000.0, ["pyscf"], None, longest=(500.0, "a trimer"))


def test_the_walltime_settings_are_checked_whatever_the_walltime():
    with dask.config.set({"qcmb_dask.batch.walltime-aware": "false"}):  # as an environment variable gives it
        assert "--lifetime" in " ".join(bs.batch_settings("slurm", {}).kwargs["worker_extra_args"])
    with dask.config.set({"qcmb_dask.batch.walltime-aware": "sometimes"}), pytest.raises(ValueError, match="true or"):
        bs.batch_settings("slurm", {"walltime": None})
    with dask.config.set({"qcmb_dask.batch.longer-than-walltime": "ignore"}), pytest.raises(ValueError, match="refuse"):
        bs.batch_settings("slurm", {})
