"""``cache info`` and ``cache clear``: the result store, what it holds, or empty it."""

from __future__ import annotations

import sys

import click

from qcmb_dask.cli import flags


def open_store(path):
    """The result store at ``path``, or the configured one; a turned-off store is a usage error."""
    from qcmb_dask import store

    root = store.location(path)  # None: the configured store (qcmb_dask.cache)
    if root is None:
        raise click.UsageError("the result store is turned off (qcmb_dask.cache: false); name one with --cache PATH")
    return store.ResultStore(root)


@click.group()
def cache():
    """The result store: what it holds, or empty it."""


@cache.command()
@flags.store_directory
def info(path):
    """Entries and size of the result store."""
    from qcmb_dask.planning import cost_history

    details = open_store(path).info()
    click.echo(f"{details['root']}: {details['entries']} result(s), {details['bytes'] / 2**20:.2f} MiB")
    for kind, (factor, nratios) in sorted(cost_history.factors(cost_history.load(details["root"])).items()):
        click.echo(
            f"  measured: {kind.replace('|', ' ')}: the cost model's estimate x {factor:.3g} ({nratios} calculations)"
        )


@cache.command()
@flags.store_directory
@click.option("--yes", is_flag=True, help="Do not ask.")
def clear(path, yes):
    """Delete every stored result (they will be computed again when needed) and the measured durations.

    Only what the store wrote is deleted; a directory that is not a store is refused."""
    from qcmb_dask import store as store_module

    store = open_store(path)
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
