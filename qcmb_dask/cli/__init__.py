"""``qcmb-dask``: the command line, a thin layer over the Python API.

    qcmb-dask run examples/water-trimer.json --out result.json --report report.html
    qcmb-dask run cluster.xyz --method mp2 --basis cc-pvdz --bsse cp --max-nbody 3
    qcmb-dask table result.json [--csv] | qcmb-dask report result.json --out report.html
    qcmb-dask run hexamer.json --cluster slurm --jobs 4 --cluster-option account=chem42
    qcmb-dask plan examples/water-trimer.json
    qcmb-dask submit hexamer.json --cluster slurm --cache /shared/store --jobs 4   # the driver as a job too
    qcmb-dask status hexamer.json --cache /shared/store                            # how far it got
    qcmb-dask programs
    qcmb-dask job-script --cluster slurm --cluster-option account=chem42
    qcmb-dask failures examples/water-trimer.json [--show LABEL]
    qcmb-dask cache info | qcmb-dask cache clear

Exit status: 0 done; 1 the run failed (fragments failed, workers never arrived); 2 bad input or
arguments, refused before anything was submitted; 130 interrupted (Ctrl-C); 143 SIGTERM (scancel, a
walltime), 129 SIGHUP (a closed login session): in each case batch jobs are cancelled and finished
fragments stay in the store.

One module per command group, with the flags they share in ``flags``. A command imports what it runs inside
its body, so that ``qcmb-dask --help`` imports neither QCEngine nor PySCF.
"""

from __future__ import annotations

import click

from qcmb_dask.cli import batch, cache, optimize, plan, programs, results, run


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="""\b
Exit status:
  0    done
  1    a calculation failed (every failure listed; finished ones are in the store)
  2    refused before anything ran: bad input, arguments or output paths
  130  interrupted by Ctrl-C;  143 by SIGTERM (scancel, a walltime);  129 by SIGHUP
       (a closed login session): finished calculations are in the store, rerun to resume""",
)
@click.version_option(package_name="qcmb_dask")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    help="Log lines of the qcmb_dask logger at this level on stderr (instead of the live display).",
)
def main(log_level):
    """Many-body expansions as Dask task graphs: QCManyBody's answer, computed in parallel."""
    if log_level:
        import logging

        from qcmb_dask.diagnostics.progress import log_to_stderr_when_unwatched

        logging.getLogger("qcmb_dask").setLevel(log_level.upper())
        log_to_stderr_when_unwatched()


for command in (
    run.run,
    plan.plan,
    plan.status,
    optimize.optimize_command,
    batch.submit,
    batch.job_script,
    results.table_command,
    results.report_command,
    results.frequencies_command,
    results.failures,
    cache.cache,
    programs.programs,
):
    main.add_command(command)

__all__ = ["main"]
