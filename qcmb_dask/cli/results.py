"""``table``, ``report``, ``frequencies`` and ``failures``: what a finished run left, in a saved result or the store."""

from __future__ import annotations

import sys

import click

from qcmb_dask.cli import flags
from qcmb_dask.cli.cache import open_store


@click.command("table")
@click.argument("result_file", metavar="RESULT", type=click.Path(exists=True, dir_okay=False))
@click.option("--csv", "as_csv", is_flag=True, help="Comma-separated, every column, for a spreadsheet.")
def table_command(result_file, as_csv):
    """The interaction energies of a saved result (run --out), per BSSE treatment and n-body level."""
    from qcmb_dask.diagnostics.results import csv_table, load, table, text_table

    result = _load_or_exit(load, result_file)
    rows = table(result)
    click.echo(csv_table(rows) if as_csv else text_table(rows, getattr(result, "return_result", None)), nl=not as_csv)


@click.command("frequencies")
@click.argument("result_file", metavar="RESULT", type=click.Path(exists=True, dir_okay=False))
def frequencies_command(result_file):
    """Harmonic frequencies (cm^-1) of a saved Hessian result (run --driver hessian --out RESULT)."""
    from qcmb_dask.vibrations import frequencies

    click.echo(_load_or_exit(frequencies, result_file).table())


@click.command("report")
@click.argument("result_file", metavar="RESULT", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out", default="report.html", show_default=True, type=click.Path(dir_okay=False))
def report_command(result_file, out):
    """An HTML report of a saved result: the table, the n-body convergence and, where kept, the timeline."""
    from qcmb_dask.diagnostics import plots
    from qcmb_dask.diagnostics.provenance import record_of
    from qcmb_dask.diagnostics.results import load
    from qcmb_dask.diagnostics.runlog import rows
    from qcmb_dask.options import check_output_path

    result = _load_or_exit(load, result_file)
    try:
        check_output_path(out, "--out")
    except ValueError as e:
        click.echo(f"qcmb-dask: {e}", err=True)
        sys.exit(2)
    plots.report(result, rows((record_of(result) or {}).get("timeline")), out)
    click.echo(f"Report written to {out}")


def _load_or_exit(load, path):
    try:
        return load(path)
    except (ValueError, FileNotFoundError) as e:  # InvalidArgument, pydantic's ValidationError
        click.echo(f"qcmb-dask: {path}: {e}", err=True)
        sys.exit(2)


@click.command()
@click.argument("input_file", metavar="[INPUT]", required=False, type=click.Path(exists=True, dir_okay=False))
@flags.store_directory
@click.option(
    "--show",
    metavar="LABEL",
    help="Print this fragment's record: its file and the whole error (for NWChem, its input and output).",
)
def failures(input_file, path, show):
    """What failed, from the store's failure records: of INPUT's calculations, or of every input.

    One line each: the fragment, its program and model, the error type and the program's own reason. A rerun
    of the input computes only what is missing.
    """
    store = open_store(path)
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
