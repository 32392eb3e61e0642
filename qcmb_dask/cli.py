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
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from pathlib import Path

import click

from qcmb_dask.options import short_help


def _cluster_options(pairs: tuple[str, ...]) -> dict | None:
    """``KEY=VALUE`` pairs; values are read as YAML (numbers, lists, true/false), as in a profile."""
    import yaml

    options = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(
                f"{pair!r}: expected KEY=VALUE, e.g. account=chem42", param_hint="--cluster-option"
            )
        key, value = pair.split("=", 1)
        options[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return options or None


def _model_flags(command):
    """Flags that make a whole input from a molecule file (``.xyz``, or a Psi4-style string in ``.psi4``); the
    command receives them together as ``model``."""
    flags = [
        click.option("--method", help="Molecule files: the QC method (e.g. hf, mp2, b3lyp)."),
        click.option("--basis", help="Molecule files: the basis set (e.g. 6-31g, cc-pvdz)."),
        click.option("--program", default=None, help="Molecule files: the QC program (default pyscf)."),
        click.option(
            "--bsse", default=None, help="Molecule files: cp, nocp, vmfc or a comma-separated list (default cp)."
        ),
        click.option("--max-nbody", type=int, help="Molecule files: the highest n-body order (default: all)."),
        click.option(
            "--driver", type=click.Choice(["energy", "gradient", "hessian"]), help="Molecule files: default energy."
        ),
        click.option(
            "--fragments",
            default=None,
            help=".xyz files: auto (one fragment per connected molecule, the default) or 0-based atom ranges, "
            "e.g. 0-2,3-5,6-8.",
        ),
    ]

    @functools.wraps(command)
    def with_model(*args, **kwargs):
        return command(*args, model={name: kwargs.pop(name) for name in _MODEL_FLAGS}, **kwargs)

    for flag in reversed(flags):
        with_model = flag(with_model)
    return with_model


_MODEL_FLAGS = ("method", "basis", "program", "bsse", "max_nbody", "driver", "fragments")


def _input(input_file: str, model: dict):
    """INPUT as compute takes it: the file itself, or the input made from a molecule file and the model flags."""
    from qcmb_dask.planning.inputs import is_molecule_file, manybody_input

    given = {k: v for k, v in model.items() if v is not None}
    if not is_molecule_file(Path(input_file)):
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise click.UsageError(
                f"{flags}: only for molecule files (.xyz, .psi4); {input_file} is a whole input with its own "
                "specification: change it there."
            )
        return input_file
    missing = [f"--{k}" for k in ("method", "basis") if k not in given]
    if missing:
        raise click.UsageError(
            f"{input_file} is a molecule: give the model chemistry with {' and '.join(missing)} "
            "(e.g. --method hf --basis 6-31g)."
        )
    bsse = given.pop("bsse", "cp")
    given["bsse_type"] = [b.strip() for b in bsse.split(",")] if "," in bsse else bsse
    return manybody_input(input_file, **given)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="""\b
Exit status:
  0    done
  1    a calculation failed (every failure listed; finished ones are in the store)
  2    refused before anything ran: bad input, arguments or output paths
  130  interrupted (Ctrl-C, SIGTERM): finished calculations are in the store, rerun to resume""",
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


@main.command()
@click.argument("input_files", metavar="INPUT...", nargs=-1, required=True, type=click.Path(exists=True))
@_model_flags
@click.option(
    "--cluster",
    default=None,
    help="Default: an embedded cluster, or this process for a plan too small to be worth starting workers. "
    "local (an embedded cluster in any case), sync (in-process), slurm, pbs, sge, lsf, htcondor, oar, moab, a "
    "profile .yaml, mpi (under mpirun) or a scheduler address tcp://host:port.",
)
@click.option("--jobs", type=int, help=short_help("jobs"))
@click.option("--adapt", nargs=2, type=int, metavar="MIN MAX", help=short_help("adapt"))
@click.option("--cluster-option", "cluster_option", multiple=True, metavar="KEY=VALUE", help="dask-jobqueue setting.")
@click.option("--workers", type=int, help=short_help("n_workers"))
@click.option("--threads-per-task", type=int, help=short_help("threads_per_task"))
@click.option("--memory-per-task", metavar="GIB|SIZE", help=short_help("memory_per_task"))
@click.option("--cache", type=click.Path(file_okay=False), help="Result store directory (default ~/.cache/...).")
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
@click.option(
    "--screening",
    metavar="ORDER=ANGSTROM,...",
    help="Distance-screened expansion (nocp, vmfc): e.g. 2=9,3=6 keeps a k-mer when all its fragment pairs are "
    "within the k-body cutoff (closest atoms) and all its (k-1)-mers are kept.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress, only the summary.")
def run(input_files, model, cluster, jobs, adapt, cluster_option, workers, threads_per_task, memory_per_task, cache,
        no_cache, out, report, on_error, timeout_per_task, screening, quiet):  # fmt: skip
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
    if len(pairs) > 1:
        settings = dict(cluster=cluster, jobs=jobs, adapt=adapt, cluster_option=cluster_option, workers=workers,
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

    if cache and no_cache:
        raise click.UsageError("give --cache PATH or --no-cache, not both")
    with _run_errors():
        for path, option in ((out, "--out"), (report, "--report")):
            if path:  # a typo here must not cost the run: checked before anything is computed
                check_output_path(path, option)
        mbin = _input(input_file, model)
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
            cluster_options=_cluster_options(cluster_option),
            n_workers=workers,
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
        click.echo(f"{kind} written to {_write_result(out, result.model_dump_json(indent=1))}")
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
        inputs = [data if isinstance(data, Exception) else _input(str(data), model) if isinstance(data, Path)
                  else data for _, data in pairs]  # fmt: skip
        no_cache = settings.pop("no_cache")
        settings["cache"] = False if no_cache else settings["cache"]
        adapt, options = settings.pop("adapt"), settings.pop("cluster_option")
        results = qcmb_dask.compute_many(
            inputs,
            names=names,
            adapt=tuple(adapt) if adapt else None,
            cluster_options=_cluster_options(options),
            n_workers=settings.pop("workers"),
            progress=False if quiet or click.get_current_context().find_root().params.get("log_level") else "auto",
            **settings,
        )
        failed = False
    except qcmb_dask.InputsFailed as e:
        click.echo(f"qcmb-dask: {e}", err=True)
        results, failed = e.results, True
    except KeyboardInterrupt:
        click.echo(
            "\nqcmb-dask: interrupted: finished fragments are in the result store; run again to go on.", err=True
        )
        sys.exit(130)
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
            _write_result(str(path), result.model_dump_json(indent=1))
    if out:
        click.echo(f"results written to {out}/")
    if failed or any(isinstance(r, (PartialResult, Exception)) for r in results):
        sys.exit(1)


@main.command("optimize")
@click.argument("input_file", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@_model_flags
@click.option("--cluster", default=None, help="As for run; one cluster serves every step.")
@click.option("--jobs", type=int, help=short_help("jobs"))
@click.option("--cluster-option", "cluster_option", multiple=True, metavar="KEY=VALUE", help="dask-jobqueue setting.")
@click.option("--workers", type=int, help=short_help("n_workers"))
@click.option("--threads-per-task", type=int, help=short_help("threads_per_task"))
@click.option("--cache", type=click.Path(file_okay=False), help="Result store directory (default ~/.cache/...).")
@click.option("--no-cache", is_flag=True, help="Keep no results: no resuming, every point computed.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the OptimizationResult (JSON) here.")
@click.option("--xyz", type=click.Path(dir_okay=False), help="Write the final geometry (XYZ, Angstrom) here.")
@click.option("--maxiter", type=int, help="geomeTRIC's most optimization steps (its default: 300).")
@click.option("--convergence-set", help="geomeTRIC's convergence criteria: GAU (default), GAU_TIGHT, NWCHEM_LOOSE, ...")
@click.option("--optimizer-keyword", "optimizer_keyword", multiple=True, metavar="KEY=VALUE",
              help="Any other geomeTRIC keyword, e.g. coordsys=dlc.")  # fmt: skip
@click.option("--quiet", "-q", is_flag=True, help="No line per step, only the summary.")
def optimize_command(input_file, model, cluster, jobs, cluster_option, workers, threads_per_task, cache, no_cache,
                     out, xyz, maxiter, convergence_set, optimizer_keyword, quiet):  # fmt: skip
    """Optimize the geometry in INPUT on its many-body energy with geomeTRIC: every step's gradient is one graph
    on one cluster, started once. Run the same command again after an interruption (or a walltime) to resume from
    the last finished step: the steps taken are in the result store.

    \b
    qcmb-dask optimize water-hexamer.xyz --method mp2 --basis cc-pvdz --bsse nocp --max-nbody 2 --xyz final.xyz
    """
    import qcmb_dask

    if cache and no_cache:
        raise click.UsageError("give --cache PATH or --no-cache, not both")
    keywords = _cluster_options(optimizer_keyword) or {}
    keywords.update({k: v for k, v in (("maxiter", maxiter), ("convergence_set", convergence_set)) if v is not None})
    with _run_errors():
        for path, option in ((out, "--out"), (xyz, "--xyz")):
            if path:
                from qcmb_dask.options import check_output_path

                check_output_path(path, option)
        result = qcmb_dask.optimize(
            _input(input_file, model),
            cluster,
            jobs=jobs,
            cluster_options=_cluster_options(cluster_option),
            n_workers=workers,
            threads_per_task=threads_per_task,
            cache=False if no_cache else cache,
            progress=not (quiet or click.get_current_context().find_root().params.get("log_level")),
            **keywords,
        )
    energies = [p.return_energy for p in result.trajectory_properties]
    click.echo(f"Converged in {len(energies)} points: E = {result.properties.return_energy:.10f} Eh "
               f"(start {energies[0]:.10f}, change {energies[-1] - energies[0]:+.10f})")  # fmt: skip
    click.echo(result.final_molecule.to_string("xyz"))
    if out:
        click.echo(f"OptimizationResult written to {_write_result(out, result.model_dump_json(indent=1))}")
    if xyz:
        click.echo(f"Final geometry written to {_write_result(xyz, result.final_molecule.to_string('xyz'))}")


@contextlib.contextmanager
def _run_errors():
    """How a long command ends on an interruption, a failed run or bad input: a message and an exit status."""
    import qcmb_dask
    from qcmb_dask.errors import Terminated

    try:
        yield
    except KeyboardInterrupt as interrupt:
        what = f"{interrupt.signal_name} received" if isinstance(interrupt, Terminated) else "interrupted"
        click.echo(
            f"\nqcmb-dask: {what}: nothing more is computed, and batch jobs are cancelled. Finished fragments are "
            "in the result store: run the same command again to compute only what is missing.",
            err=True,
        )
        sys.exit(interrupt.exit_status if isinstance(interrupt, Terminated) else 130)
    except (qcmb_dask.FragmentsFailed, qcmb_dask.WorkersNeverArrived, qcmb_dask.SchedulerLost) as e:
        click.echo(f"qcmb-dask: the run failed.\n{e}", err=True)
        sys.exit(1)
    except qcmb_dask.OptimizationNotConverged as e:
        click.echo(f"qcmb-dask: {e}", err=True)
        sys.exit(1)
    except (ValueError, FileNotFoundError) as e:  # InvalidInput is a ValueError
        click.echo(f"qcmb-dask: {e}", err=True)
        sys.exit(2)


def _terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _write_result(out: str, text: str) -> str:
    """Write the result to ``out``; if that fails now (disk full, directory removed), to a temporary file rather
    than lose it. Returns where it went."""
    try:
        with open(out, "w") as f:
            f.write(text)
        return out
    except OSError as err:
        import tempfile

        with tempfile.NamedTemporaryFile("w", prefix="qcmb-dask-result-", suffix=".json", delete=False) as f:
            f.write(text)
        click.echo(f"qcmb-dask: cannot write {out} ({err}); the result is kept in {f.name} instead.", err=True)
        return f.name


@main.command("table")
@click.argument("result_file", metavar="RESULT", type=click.Path(exists=True, dir_okay=False))
@click.option("--csv", "as_csv", is_flag=True, help="Comma-separated, every column, for a spreadsheet.")
def table_command(result_file, as_csv):
    """The interaction energies of a saved result (run --out), per BSSE treatment and n-body level."""
    from qcmb_dask.diagnostics.results import csv_table, load, table, text_table

    result = _load_or_exit(load, result_file)
    rows = table(result)
    click.echo(csv_table(rows) if as_csv else text_table(rows, getattr(result, "return_result", None)), nl=not as_csv)


@main.command("frequencies")
@click.argument("result_file", metavar="RESULT", type=click.Path(exists=True, dir_okay=False))
def frequencies_command(result_file):
    """Harmonic frequencies (cm^-1) of a saved Hessian result (run --driver hessian --out RESULT)."""
    from qcmb_dask.vibrations import frequencies

    click.echo(_load_or_exit(frequencies, result_file).table())


@main.command("report")
@click.argument("result_file", metavar="RESULT", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out", default="report.html", show_default=True, type=click.Path(dir_okay=False))
def report_command(result_file, out):
    """An HTML report of a saved result: the table, the n-body convergence and, where kept, the timeline."""
    from qcmb_dask.diagnostics import plots
    from qcmb_dask.diagnostics.provenance import record_of
    from qcmb_dask.diagnostics.results import load
    from qcmb_dask.options import check_output_path

    result = _load_or_exit(load, result_file)
    try:
        check_output_path(out, "--out")
    except ValueError as e:
        click.echo(f"qcmb-dask: {e}", err=True)
        sys.exit(2)
    plots.report(result, (record_of(result) or {}).get("timeline"), out)
    click.echo(f"Report written to {out}")


def _load_or_exit(load, path):
    try:
        return load(path)
    except (ValueError, FileNotFoundError) as e:  # InvalidArgument, pydantic's ValidationError
        click.echo(f"qcmb-dask: {path}: {e}", err=True)
        sys.exit(2)


@main.command()
@click.argument("input_file", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@_model_flags
@click.option(
    "--cache", type=click.Path(file_okay=False), help="Result store whose measured durations refine the estimates."
)
@click.option(
    "--screening",
    metavar="ORDER=ANGSTROM,...",
    help="Distance-screened expansion (nocp, vmfc): e.g. 2=9,3=6 keeps a k-mer when all its fragment pairs are "
    "within the k-body cutoff (closest atoms) and all its (k-1)-mers are kept.",
)
def plan(input_file, model, cache, screening):
    """What INPUT would run: calculations per model chemistry and n-body level, estimated cost. No QC."""
    import qcmb_dask

    try:
        mbin = _input(input_file, model)
        click.echo(str(qcmb_dask.plan(mbin, cache=cache, screening=screening)))
    except ValueError as e:
        click.echo(f"qcmb-dask: {e}", err=True)
        sys.exit(2)


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("input_file", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@click.option("--cluster", default="slurm", show_default=True, help="slurm, pbs, or a profile .yaml of either.")
@click.option(
    "--cache", type=click.Path(file_okay=False), help="Result store on a shared path (default: the configured)."
)
@click.option(
    "--out", type=click.Path(dir_okay=False), help="Where the driver writes the result (default result.json)."
)
@click.option("--driver-walltime", default="1-00:00:00", show_default=True, help="The driver job's walltime.")
@click.option("--driver-memory", default="4G", show_default=True, help="The driver job's memory.")
@click.option("--cluster-option", "cluster_option", multiple=True, metavar="KEY=VALUE", help="dask-jobqueue setting.")
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
    from qcmb_dask.clusters.jobqueue_settings import resolve as resolve_settings
    from qcmb_dask.errors import JobsRefused

    input_path = os.path.abspath(input_file)
    cluster_arg = os.path.abspath(cluster) if cluster.endswith((".yaml", ".yml")) else cluster
    root = store.resolve(cache)
    if root is None:
        raise click.UsageError("the driver job keeps its progress in the result store: give --cache DIR (shared).")
    out = os.path.abspath(out or "result.json")
    arguments = [input_path, "--cluster", cluster_arg, "--cache", str(root), "--out", out]
    arguments += [f"--cluster-option={pair}" for pair in cluster_option]
    arguments += list(run_options)
    try:
        parsed = run.make_context("run", list(arguments), resilient_parsing=False).params  # refused here, not later
        model = {k: parsed[k] for k in _MODEL_FLAGS}
        qcmb_dask.plan(_input(input_path, model), cache=root)  # bad input is refused before anything is submitted
        settings = resolve_settings(
            cluster_arg, _cluster_options(cluster_option), threads_per_task=parsed["threads_per_task"]
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
    log = job.log.replace("%j", job_id)
    queue = f"squeue -j {job_id}" if job.system == "slurm" else f"qstat {job_id}"
    cancel = f"scancel {job_id}" if job.system == "slurm" else f"qdel {job_id}"
    click.echo(
        f"Submitted driver job {job_id} ({job.system.upper()}): qcmb-dask run {input_file}, result to {out}.\n"
        f"  follow it:     tail -f {log}\n"
        f"  in the queue:  {queue}\n"
        f"  how far:       qcmb-dask status {input_file} --cache {root}\n"
        f"  stop it:       {cancel}   (its worker jobs are cancelled with it; submit again to resume)"
    )


@main.command()
@click.argument("input_file", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@_model_flags
@click.option("--cache", type=click.Path(file_okay=False), help="Store directory (default: the configured).")
@click.option("--screening", metavar="ORDER=ANGSTROM,...", help="The screened run's cutoffs, as given to run.")
def status(input_file, model, cache, screening):
    """How far a run of INPUT got, from the result store alone: calculations stored per n-body level. Runs nothing."""
    import qcmb_dask

    try:
        mbin = _input(input_file, model)
        counts = qcmb_dask.progress_in_store(mbin, cache=cache, screening=screening)
    except (ValueError, FileNotFoundError) as e:
        click.echo(f"qcmb-dask: {e}", err=True)
        sys.exit(2)
    from qcmb_dask import store

    done, total = sum(d for d, _ in counts.values()), sum(t for _, t in counts.values())
    levels = " | ".join(f"{n}-body {d}/{t}" for n, (d, t) in counts.items())
    state = "complete: a run computes nothing more" if done == total else f"{total - done} still to compute"
    click.echo(f"{input_file}: {done} of {total} calculations in the store at {store.resolve(cache)} ({state})")
    click.echo(f"  {levels}")


@main.command()
def programs():
    """Which QC programs QCEngine can run here, and how to get the others."""
    import qcengine

    from qcmb_dask.programs import INSTALL_HINTS, register_shipped

    register_shipped()
    usable = set(qcengine.list_available_programs())
    known = sorted(set(INSTALL_HINTS) | usable)
    width = max(len(name) for name in known)
    for name in known:
        state = "usable" if name in usable else "missing"
        hint = "" if name in usable else f"  ({INSTALL_HINTS.get(name, 'see QCEngine documentation')})"
        click.echo(f"{name:<{width}}  {state}{hint}")


@main.command()
@click.argument("input_file", metavar="[INPUT]", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--cache", "path", type=click.Path(file_okay=False), help="Store directory (default: the configured).")
@click.option("--show", metavar="LABEL", help="Print this fragment's whole record: the program's input and output.")
def failures(input_file, path, show):
    """What failed, from the store's failure records: of INPUT's calculations, or of every input.

    One line each: the fragment, its program and model, the error type and the program's own reason. A rerun
    of the input computes only what is missing.
    """
    store = _store(path)
    records = store.failure_records()
    if input_file:
        import qcmb_dask

        try:
            token = qcmb_dask.plan(input_file, cache=False).token
        except ValueError as e:
            click.echo(f"qcmb-dask: {e}", err=True)
            sys.exit(2)
        records = [(p, r) for p, r in records if (r.get("qcmb_dask") or {}).get("input") == token]
    if show is not None:
        shown = [(p, r) for p, r in records if (r.get("qcmb_dask") or {}).get("label") == show]
        if not shown:
            click.echo(f"qcmb-dask: no failure record of {show!r} in {store.root}", err=True)
            sys.exit(2)
        for record_path, record in shown:
            click.echo(f"{show}: {record_path}\n{record['error'].get('error_message', record['error'])}")
        return
    if not records:
        click.echo(f"No failure records{' of ' + input_file if input_file else ''} in {store.root}.")
        return
    from qcmb_dask.errors import one_line_reason

    for record_path, record in records:
        about = record.get("qcmb_dask") or {}
        error = record["error"]
        model = f"{about.get('program', '?')} {about.get('method', '?')}/{about.get('basis', '?')}"
        label = about.get("label", record_path.name)
        reason = one_line_reason(str(error.get("error_message", "")))
        click.echo(f"{label} ({about.get('nbody', '?')}-body, {model}) {error.get('error_type')}: {reason}")
    click.echo(f"{len(records)} failure record(s) in {store.root / 'failed'}; --show LABEL prints one whole.")


@main.command("job-script")
@click.option("--cluster", default="slurm", show_default=True, help="A batch system or a profile .yaml.")
@click.option("--cluster-option", "cluster_option", multiple=True, metavar="KEY=VALUE", help="dask-jobqueue setting.")
@click.option("--threads-per-task", type=int, help=short_help("threads_per_task"))
@click.option("--memory-per-task", metavar="GIB|SIZE", help=short_help("memory_per_task"))
def job_script(cluster, cluster_option, threads_per_task, memory_per_task):
    """The batch script compute(cluster=...) would submit. Submits nothing."""
    import qcmb_dask

    try:
        click.echo(
            qcmb_dask.job_script(
                cluster,
                cluster_options=_cluster_options(cluster_option),
                threads_per_task=threads_per_task,
                memory_per_task=memory_per_task,
            )
        )
    except ValueError as e:
        click.echo(f"qcmb-dask: {e}", err=True)
        sys.exit(2)


@main.group()
def cache():
    """The result store: what it holds, or empty it."""


def _store(path):
    from qcmb_dask import store

    root = store.resolve(path)  # None: the configured store (qcmb_dask.cache)
    if root is None:
        raise click.UsageError("the result store is turned off (qcmb_dask.cache: false); name one with --cache PATH")
    return store.ResultStore(root)


@cache.command()
@click.option("--cache", "path", type=click.Path(file_okay=False), help="Store directory (default: the configured).")
def info(path):
    """Entries and size of the result store."""
    from qcmb_dask.planning import cost_history

    details = _store(path).info()
    click.echo(f"{details['root']}: {details['entries']} result(s), {details['bytes'] / 2**20:.2f} MiB")
    for kind, (factor, nratios) in sorted(cost_history.factors(cost_history.load(details["root"])).items()):
        click.echo(
            f"  measured: {kind.replace('|', ' ')}: the cost model's estimate x {factor:.3g} ({nratios} calculations)"
        )


@cache.command()
@click.option("--cache", "path", type=click.Path(file_okay=False), help="Store directory (default: the configured).")
@click.option("--yes", is_flag=True, help="Do not ask.")
def clear(path, yes):
    """Delete every stored result (they will be computed again when needed) and the measured durations.

    Only what the store wrote is deleted; a directory that is not a store is refused."""
    from qcmb_dask import store as store_module

    store = _store(path)
    if not store.is_store():
        click.echo(
            f"qcmb-dask: {str(store.root)!r} is not a qcmb_dask result store (no {store_module.MARKER} file, no "
            "entries): nothing was deleted. Name the store's own directory.",
            err=True,
        )
        sys.exit(2)
    details = store.info()
    if not yes:
        click.confirm(f"Delete {details['entries']} result(s) in {details['root']}?", abort=True)
    from qcmb_dask.planning import cost_history

    try:
        removed = store.clear()
    except ValueError as e:
        click.echo(f"qcmb-dask: {e}", err=True)
        sys.exit(2)
    forgot = " and the measured durations" if cost_history.clear(store.root) else ""
    click.echo(f"Removed {removed} result(s){forgot} from {details['root']}")


if __name__ == "__main__":
    main()
