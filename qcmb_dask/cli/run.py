"""``run``: the many-body expansion of one INPUT, or of several as one graph on one cluster."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from qcmb_dask.cli import flags
from qcmb_dask.cli.outcome import run_errors, write_result
from qcmb_dask.options import short_help


@click.command()
@click.argument("input_files", metavar="INPUT...", nargs=-1, required=True, type=click.Path(exists=True))
@flags.model
@click.option(
    "--cluster",
    default=None,
    help="Default: an embedded cluster, or this process for a plan too small to be worth starting workers. "
    "local (an embedded cluster in any case), sync (in-process), slurm, pbs, sge, lsf, htcondor, oar, moab, a "
    "profile .yaml, mpi (under mpirun) or a scheduler address tcp://host:port.",
)
@flags.jobs
@click.option("--adapt", nargs=2, type=int, metavar="MIN MAX", help=short_help("adapt"))
@flags.cluster_option
@flags.workers
@flags.gpus
@flags.processes_per_gpu
@flags.threads_per_task
@flags.memory_per_task
@flags.result_store
@click.option("--no-cache", is_flag=True, help="Keep no results: every fragment is computed.")
@click.option(
    "--out",
    type=click.Path(),
    help="Write the ManyBodyResult here as JSON (several inputs: a directory, a file per input).",
)
@click.option("--report", type=click.Path(dir_okay=False), help=short_help("report"))
@click.option(
    "--on-error",
    type=click.Choice(["raise", "partial"]),
    default=None,
    help="partial: report the highest complete n-body level when fragments fail (default: qcmb_dask.on-error, raise).",
)
@click.option("--timeout-per-task", metavar="SECONDS|DURATION", help=short_help("timeout_per_task"))
@flags.screening
@click.option("--quiet", "-q", is_flag=True, help="No progress, only the summary.")
def run(input_files, model, cluster, jobs, adapt, cluster_option, workers, gpus, processes_per_gpu, threads_per_task,
        memory_per_task, cache, no_cache, out, report, on_error, timeout_per_task, screening, quiet):  # fmt: skip
    """Run the many-body expansion in INPUT: a ManyBodyInput (JSON or YAML, geometry in Bohr), or a molecule file
    (.xyz in Angstrom, or a Psi4-style string in a .psi4 file: '--' between fragments, 'units angstrom') with
    --method and --basis.

    Several INPUTs, a directory of input files or a YAML file of several documents ('---' between them) run as
    one graph on one cluster (a scan, a trajectory): a calculation they share runs once; --out is then a
    directory that gets one result file per input.

    \b
    qcmb-dask run cluster.xyz --method mp2 --basis cc-pvdz --bsse cp --max-nbody 3
    qcmb-dask run scan/ --out scan-results/
    """
    from qcmb_dask.planning.inputs import read_input_set

    try:
        pairs = read_input_set(list(input_files))
    except ValueError as e:  # an empty directory
        click.echo(f"qcmb-dask: {e}", err=True)
        sys.exit(2)
    if cache and no_cache:
        raise click.UsageError("give --cache PATH or --no-cache, not both")
    if len(pairs) > 1:
        settings = dict(cluster=cluster, jobs=jobs, adapt=adapt, cluster_option=cluster_option, workers=workers,
                        gpus=gpus, processes_per_gpu=processes_per_gpu,
                        threads_per_task=threads_per_task, memory_per_task=memory_per_task, cache=cache,
                        no_cache=no_cache, on_error=on_error, timeout_per_task=timeout_per_task,
                        screening=screening)  # fmt: skip
        _run_many(pairs, model, settings, out, report, quiet)
        return
    input_file = str(input_files[0]) if Path(input_files[0]).is_file() else str(pairs[0][1])
    import qcmb_dask
    from qcmb_dask.diagnostics.results import table, text_table
    from qcmb_dask.options import check_output_path
    from qcmb_dask.worker.analysis import PartialResult

    with run_errors():
        for path, option in ((out, "--out"), (report, "--report")):
            if path:  # a typo here must not cost the run: checked before anything is computed
                check_output_path(path, option)
        mbin = flags.input_from(input_file, model)
        plan = qcmb_dask.plan(mbin, cache=False if no_cache else cache, screening=screening)
        if cluster == "mpi":  # every rank runs this command; only rank 1 (the client) speaks
            from qcmb_dask.clusters.mpi import is_client_rank

            quiet = quiet or not is_client_rank()
        if not quiet and _terminal():  # elsewhere compute logs the plan with the other lines
            click.echo(str(plan) + "\n", err=True)
        result = qcmb_dask.compute(
            mbin,
            cluster,
            jobs=jobs,
            adapt=tuple(adapt) if adapt else None,
            cluster_options=flags.parse_key_values(cluster_option),
            n_workers=workers,
            gpus=gpus,
            processes_per_gpu=processes_per_gpu,
            threads_per_task=threads_per_task,
            memory_per_task=memory_per_task,
            cache=False if no_cache else cache,
            on_error=on_error,
            timeout_per_task=timeout_per_task,
            # a terminal's live display, else (or with --log-level) plain log lines
            progress=False if quiet or click.get_current_context().find_root().params.get("log_level") else "auto",
            report=report,
            screening=screening,
        )
    partial = isinstance(result, PartialResult)
    if partial:
        from qcmb_dask.errors import summary_lines

        click.echo(
            f"qcmb-dask: {len(result.failures)} fragment(s) failed; complete through {result.nbody}-body:", err=True
        )
        click.echo("\n".join(summary_lines(result.failures)), err=True)
    click.echo(text_table(table(result), None if partial else result.return_result))
    if not partial and result.input_data.specification.driver == "hessian":
        click.echo("\nHarmonic frequencies of the many-body Hessian:\n" + qcmb_dask.frequencies(result).table())
    if out:
        kind = "PartialResult" if partial else "ManyBodyResult"
        click.echo(f"{kind} written to {write_result(out, result.model_dump_json(indent=1))}")
    if report:
        click.echo(f"Report written to {report}")
    if partial:
        sys.exit(1)


def _run_many(pairs, model, settings, out, report, quiet) -> None:
    """``run`` with several inputs: compute_many, a line per input, a result file per input in ``--out``."""
    import qcmb_dask
    from qcmb_dask.worker.analysis import PartialResult

    if report:
        raise click.UsageError("--report draws one run; with several inputs, leave it out (plots: qcmb_dask.plots).")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)  # a typo here must not cost the run: made before it
    names = [name for name, _ in pairs]
    try:
        inputs = [data if isinstance(data, Exception) else flags.input_from(str(data), model)
                  if isinstance(data, Path) else data for _, data in pairs]  # fmt: skip
        no_cache = settings.pop("no_cache")
        settings["cache"] = False if no_cache else settings["cache"]
        adapt, options = settings.pop("adapt"), settings.pop("cluster_option")
        results = qcmb_dask.compute_many(
            inputs,
            names=names,
            adapt=tuple(adapt) if adapt else None,
            cluster_options=flags.parse_key_values(options),
            n_workers=settings.pop("workers"),
            progress=False if quiet or click.get_current_context().find_root().params.get("log_level") else "auto",
            **settings,
        )
        failed = False
    except qcmb_dask.InputsFailed as e:
        click.echo(f"qcmb-dask: {e}", err=True)
        results, failed = e.results, True
    except KeyboardInterrupt as interrupt:
        from qcmb_dask.errors import Terminated

        terminated = isinstance(interrupt, Terminated)
        what = f"{interrupt.signal_name} received" if terminated else "interrupted"
        click.echo(f"\nqcmb-dask: {what}: finished fragments are in the result store; run again to go on.", err=True)
        sys.exit(interrupt.exit_status if terminated else 130)  # 143 for SIGTERM, 129 for SIGHUP, as for one input
    except (qcmb_dask.WorkersNeverArrived, qcmb_dask.SchedulerLost) as e:
        click.echo(f"qcmb-dask: the run failed.\n{e}", err=True)
        sys.exit(1)
    except (ValueError, FileNotFoundError) as e:
        click.echo(f"qcmb-dask: {e}", err=True)
        sys.exit(2)
    width = max(len(name) for name in names)
    for number, (name, result) in enumerate(zip(names, results), start=1):
        if result is None or isinstance(result, Exception):
            click.echo(f"{name:<{width}}  failed")
            continue
        partial = isinstance(result, PartialResult)
        value = f"complete through {result.nbody}-body" if partial else f"{result.return_result!s:.80}"
        click.echo(f"{name:<{width}}  {value}")
        if out:
            path = Path(out) / f"{number:04d}-{Path(name.split('#')[0]).stem}.json"
            write_result(str(path), result.model_dump_json(indent=1))
    if out:
        click.echo(f"results written to {out}/")
    if failed or any(isinstance(r, (PartialResult, Exception)) for r in results):
        sys.exit(1)


def _terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
