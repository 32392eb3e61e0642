"""Progress reporting: the dashboard link and each n-body level's result as it completes."""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Callable, Optional, TextIO, Union

from .analysis import LevelIncomplete
from .store import StoreWarning

logger = logging.getLogger("qcmb_dask")

HARTREE_TO_KCAL = 627.5094740631  # CODATA 2018, QCElemental's value

ProgressArg = Union[bool, str, Callable, None]


class Reporter:
    """``progress=True`` prints to stderr, ``"auto"`` only when stderr is a terminal, ``False`` logs only;
    a callable receives every :class:`~qcmb_dask.analysis.LevelResult` as it arrives."""

    def __init__(self, progress: ProgressArg = "auto", stream: Optional[TextIO] = None):
        if progress not in (True, False, None, "auto") and not callable(progress):
            raise ValueError(f"progress={progress!r}: expected True, False, 'auto' or a callable.")
        self.stream = stream or sys.stderr
        self.callback = progress if callable(progress) else None
        self.enabled = progress is True or (progress == "auto" and _isatty(self.stream))

    def say(self, line: str) -> None:
        logger.info(line)
        if self.enabled:
            print(line, file=self.stream, flush=True)

    def dashboard(self, link: Optional[str]) -> None:
        if link:
            self.say(f"qcmb_dask: Dask dashboard at {link}")

    def level(self, level, bsse_types) -> None:
        if isinstance(level, LevelIncomplete):
            self.say(
                f"qcmb_dask: the {level.nbody}-body level cannot be assembled: {len(level.failed)} of its "
                f"{level.ncalculations} calculations failed"
            )
            return
        if self.callback is not None:
            self.callback(level)
        parts = []
        for bt in bsse_types:
            value = level.interaction_energy(bt)
            if value is not None:
                parts.append(f"{bt.upper()} IE {value:.10f} Eh ({value * HARTREE_TO_KCAL:.4f} kcal/mol)")
        summary = "; ".join(parts) or f"energy {level.return_energy:.10f} Eh"
        self.say(f"qcmb_dask: {level.nbody}-body result ready ({level.ncalculations} calculations): {summary}")

    def stats(self, stats, store_root) -> None:
        """Where the fragment results came from; a loud warning when the store could not keep them."""
        if store_root is not None:
            self.say(
                f"qcmb_dask: {stats.computed} fragment(s) computed, {stats.from_store} taken from the store "
                f"at {store_root}"
            )
        if stats.escalated:
            self.say(
                f"qcmb_dask: {len(stats.escalated)} fragment(s) converged only with the convergence fallback: "
                + ", ".join(list(stats.escalated)[:5])
            )
        if stats.store_error_count:
            warnings.warn(
                f"qcmb_dask: {stats.store_error_count} fragment result(s) could not be written to the store "
                f"({'; '.join(stats.store_errors)}). This run's answer is complete and unaffected, but a rerun "
                "would compute those fragments again: free space or pass cache=<another directory>.",
                StoreWarning,
                stacklevel=3,
            )


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
