"""``plan`` and ``status``: a run of INPUT as planned, before it (what it would compute) and after (how much of
that the result store holds). Neither runs anything."""

from __future__ import annotations

import sys

import click

from qcmb_dask.cli import flags


@click.command()
@click.argument("input_file", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@flags.model
@click.option(
    "--cache", type=click.Path(file_okay=False), help="Result store whose measured durations refine the estimates."
)
@flags.screening
def plan(input_file, model, cache, screening):
    """What INPUT would run: calculations per model chemistry and n-body level, estimated cost. No QC."""
    import qcmb_dask

    try:
        mbin = flags.input_from(input_file, model)
        click.echo(str(qcmb_dask.plan(mbin, cache=cache, screening=screening)))
    except ValueError as e:
        click.echo(f"qcmb-dask: {e}", err=True)
        sys.exit(2)


@click.command()
@click.argument("input_file", metavar="INPUT", type=click.Path(exists=True, dir_okay=False))
@flags.model
@click.option("--cache", type=click.Path(file_okay=False), help="Store directory (default: the configured).")
@click.option("--screening", metavar="ORDER=ANGSTROM,...", help="The screened run's cutoffs, as given to run.")
def status(input_file, model, cache, screening):
    """How far a run of INPUT got, from the result store alone: calculations stored per n-body level. Runs nothing."""
    import qcmb_dask

    try:
        mbin = flags.input_from(input_file, model)
        counts = qcmb_dask.progress_in_store(mbin, cache=cache, screening=screening)
    except (ValueError, FileNotFoundError) as e:
        click.echo(f"qcmb-dask: {e}", err=True)
        sys.exit(2)
    from qcmb_dask import store

    done, total = sum(d for d, _ in counts.values()), sum(t for _, t in counts.values())
    levels = " | ".join(f"{n}-body {d}/{t}" for n, (d, t) in counts.items())
    state = "complete: a run computes nothing more" if done == total else f"{total - done} still to compute"
    click.echo(f"{input_file}: {done} of {total} calculations in the store at {store.location(cache)} ({state})")
    click.echo(f"  {levels}")
