"""``submit`` and ``job-script``: the batch side, the driver job that runs ``run`` and the worker jobs' script."""

from __future__ import annotations

import os
import sys

import click

from qcmb_dask.cli import flags
from qcmb_dask.cli.run import run


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("input_file", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@click.option("--cluster", default="slurm", show_default=True, help="slurm, pbs, sge, lsf, or a profile .yaml of one.")
@click.option(
    "--cache", type=click.Path(file_okay=False), help="Result store on a shared path (default: the configured)."
)
@click.option(
    "--out", type=click.Path(dir_okay=False), help="Where the driver writes the result (default result.json)."
)
@click.option("--driver-walltime", default="1-00:00:00", show_default=True, help="The driver job's walltime.")
@click.option("--driver-memory", default="4G", show_default=True, help="The driver job's memory.")
@flags.cluster_option
@click.option("--dry-run", is_flag=True, help="Print the driver job's script; submit nothing.")
@click.argument("run_options", nargs=-1, type=click.UNPROCESSED)
def submit(input_file, cluster, cache, out, driver_walltime, driver_memory, cluster_option, dry_run, run_options):
    """Submit the run itself as a small batch job (the driver), so that nothing long runs on the login node.

    The driver job runs `qcmb-dask run INPUT --cluster CLUSTER ...` (any further RUN_OPTIONS, e.g. --jobs 4
    --method hf --basis 6-31g, are passed on), submits and cancels the worker jobs itself, and keeps finished
    fragments in the store: `qcmb-dask status INPUT` says how far it got; submitting again resumes.

    \b
    qcmb-dask submit hexamer.json --cluster slurm --cache /shared/qcmb-store --jobs 4
    """
    import qcmb_dask
    from qcmb_dask import store
    from qcmb_dask.clusters import driver_job
    from qcmb_dask.clusters.jobqueue_settings import batch_settings
    from qcmb_dask.errors import JobsRefused

    input_path = os.path.abspath(input_file)
    cluster_arg = os.path.abspath(cluster) if cluster.endswith((".yaml", ".yml")) else cluster
    root = store.location(cache)
    if root is None:
        raise click.UsageError("the driver job keeps its progress in the result store: give --cache DIR (shared).")
    out = os.path.abspath(out or "result.json")
    arguments = [input_path, "--cluster", cluster_arg, "--cache", str(root), "--out", out]
    arguments += [f"--cluster-option={pair}" for pair in cluster_option]
    arguments += list(run_options)
    try:
        parsed = run.make_context("run", list(arguments), resilient_parsing=False).params  # refused here, not later
        model = {k: parsed[k] for k in flags.MODEL_FLAGS}
        # bad input is refused before anything is submitted
        qcmb_dask.plan(flags.input_from(input_path, model), cache=root)
        settings = batch_settings(
            cluster_arg, flags.parse_key_values(cluster_option), threads_per_task=parsed["threads_per_task"]
        )
        job = driver_job.driver_job(
            settings,
            arguments,
            walltime=driver_walltime,
            memory=driver_memory,
            log_directory=os.path.abspath(settings.kwargs.get("log_directory") or "qcmb-dask-logs"),
        )
    except (ValueError, FileNotFoundError) as e:
        click.echo(f"qcmb-dask: {e}", err=True)
        sys.exit(2)
    if dry_run:
        click.echo(job.script)
        return
    script_path = os.path.join(os.path.dirname(job.log), "qcmb-dask-driver.sh")
    try:
        job_id = driver_job.submit(job, script_path)
    except JobsRefused as e:
        click.echo(f"qcmb-dask: {e}", err=True)
        sys.exit(1)
    log = job.log.replace("%j", job_id).replace("%J", job_id)  # SLURM writes %j, LSF %J
    from qcmb_dask.clusters.batch_systems import SYSTEMS

    queue = f"{SYSTEMS[job.system].status} {job_id}"
    cancel = f"{SYSTEMS[job.system].cancel} {job_id}"
    click.echo(
        f"Submitted driver job {job_id} ({job.system.upper()}): qcmb-dask run {input_file}, result to {out}.\n"
        f"  follow it:     tail -f {log}\n"
        f"  in the queue:  {queue}\n"
        f"  how far:       qcmb-dask status {input_file}{_model_flags(model)} --cache {root}\n"
        f"  stop it:       {cancel}   (its worker jobs are cancelled with it; submit again to resume)"
    )


def _model_flags(model: dict) -> str:
    """The model flags a molecule file was submitted with, as ``status`` needs them to find its results."""
    import shlex

    given = [(name, value) for name, value in model.items() if value is not None]
    return "".join(f" --{name.replace('_', '-')} {shlex.quote(str(value))}" for name, value in given)


@click.command("job-script")
@click.option("--cluster", default="slurm", show_default=True, help="A batch system or a profile .yaml.")
@flags.cluster_option
@flags.threads_per_task
@flags.memory_per_task
def job_script(cluster, cluster_option, threads_per_task, memory_per_task):
    """The batch script compute(cluster=...) would submit. Submits nothing."""
    import qcmb_dask

    try:
        click.echo(
            qcmb_dask.job_script(
                cluster,
                cluster_options=flags.parse_key_values(cluster_option),
                threads_per_task=threads_per_task,
                memory_per_task=memory_per_task,
            )
        )
    except ValueError as e:
        click.echo(f"qcmb-dask: {e}", err=True)
        sys.exit(2)
