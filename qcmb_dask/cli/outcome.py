"""How a long command's outcome reaches the user: a failure as a message and an exit status, a result as a file
that is not lost."""

from __future__ import annotations

import contextlib
import sys

import click


@contextlib.contextmanager
def run_errors():
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


def write_result(out: str, text: str) -> str:
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
