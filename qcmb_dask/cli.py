"""``qcmb-dask``: the command line, a thin layer over the Python API.

    qcmb-dask run examples/water-trimer.json --out result.json --report report.html
    qcmb-dask run hexamer.json --cluster slurm --jobs 4 --cluster-option account=chem42
    qcmb-dask plan examples/water-trimer.json
    qcmb-dask programs
    qcmb-dask job-script --cluster slurm --cluster-option account=chem42
    qcmb-dask failures examples/water-trimer.json [--show LABEL]
    qcmb-dask cache info | qcmb-dask cache clear

Exit status: 0 done; 1 the run failed (fragments failed, workers never arrived); 2 bad input or
arguments, refused before anything was submitted; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import sys

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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qcmb_dask")
def main():
    """Many-body expansions as Dask task graphs: QCManyBody's answer, computed in parallel."""


@main.command()
@click.argument("input_file", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
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
@click.option("--memory-per-task", type=float, help=short_help("memory_per_task"))
@click.option("--cache", type=click.Path(file_okay=False), help="Result store directory (default ~/.cache/...).")
@click.option("--no-cache", is_flag=True, help="Keep no results: every fragment is computed.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the ManyBodyResult here as JSON.")
@click.option("--report", type=click.Path(dir_okay=False), help=short_help("report"))
@click.option(
    "--on-error",
    type=click.Choice(["raise", "partial"]),
    default="raise",
    show_default=True,
    help="partial: report the highest complete n-body level when fragments fail.",
)
@click.option("--timeout-per-task", type=float, help=short_help("timeout_per_task"))
@click.option("--quiet", "-q", is_flag=True, help="No progress, only the summary.")
def run(input_file, cluster, jobs, adapt, cluster_option, workers, threads_per_task, memory_per_task, cache, no_cache,
        out, report, on_error, timeout_per_task, quiet):  # fmt: skip
    """Run the many-body expansion in INPUT (a ManyBodyInput as JSON or YAML)."""
    import qcmb_dask
    from qcmb_dask.diagnostics.plots import summary_rows
    from qcmb_dask.options import check_output_path
    from qcmb_dask.worker.analysis import PartialResult

    if cache and no_cache:
        raise click.UsageError("give --cache PATH or --no-cache, not both")
    try:
        for path, option in ((out, "--out"), (report, "--report")):
            if path:  # a typo here must not cost the run: checked before anything is computed
                check_output_path(path, option)
        plan = qcmb_dask.plan(input_file, cache=False if no_cache else cache)
        if cluster == "mpi":  # every rank runs this command; only rank 1 (the client) speaks
            from qcmb_dask.clusters.mpi import is_client_rank

            quiet = quiet or not is_client_rank()
        if not quiet:
            click.echo(str(plan) + "\n", err=True)
        result = qcmb_dask.compute(
            input_file,
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
            progress=not quiet,
            report=report,
        )
    except KeyboardInterrupt:
        click.echo("\nqcmb-dask: interrupted. Finished fragments are in the result store: rerun to resume.", err=True)
        sys.exit(130)
    except (qcmb_dask.FragmentsFailed, qcmb_dask.WorkersNeverArrived, qcmb_dask.SchedulerLost) as e:
        click.echo(f"qcmb-dask: the run failed.\n{e}", err=True)
        sys.exit(1)
    except (ValueError, FileNotFoundError) as e:  # InvalidInput is a ValueError
        click.echo(f"qcmb-dask: {e}", err=True)
        sys.exit(2)
    if isinstance(result, PartialResult):
        click.echo(
            f"qcmb-dask: {len(result.failures)} fragment(s) failed; complete through {result.nbody}-body:", err=True
        )
        from qcmb_dask.errors import summary_lines

        click.echo("\n".join(summary_lines(result.failures)), err=True)
        sys.exit(1)
    click.echo(_summary_table(summary_rows(result), result))
    if out:
        click.echo(f"ManyBodyResult written to {_write_result(out, result.model_dump_json(indent=1))}")
    if report:
        click.echo(f"Report written to {report}")


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


def _summary_table(rows, result) -> str:
    lines = [f"{'BSSE':<6}{'n-body':>7}{'IE (Eh)':>18}{'IE (kcal/mol)':>16}"]
    lines += [f"{bt:<6}{n:>7}{eh:>18.10f}{kcal:>16.4f}" for bt, n, eh, kcal in rows]
    if not rows:
        lines.append(f"(no interaction energies; total {result.return_result})")
    return "\n".join(lines)


@main.command()
@click.argument("input_file", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--cache", type=click.Path(file_okay=False), help="Result store whose measured durations refine the estimates."
)
def plan(input_file, cache):
    """What INPUT would run: calculations per model chemistry and n-body level, estimated cost. No QC."""
    import qcmb_dask

    try:
        click.echo(str(qcmb_dask.plan(input_file, cache=cache)))
    except ValueError as e:
        click.echo(f"qcmb-dask: {e}", err=True)
        sys.exit(2)


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
@click.option("--memory-per-task", type=float, help=short_help("memory_per_task"))
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
