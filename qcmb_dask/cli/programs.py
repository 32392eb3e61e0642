"""``programs``: which QC programs this machine can run."""

from __future__ import annotations

import click


@click.command()
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
