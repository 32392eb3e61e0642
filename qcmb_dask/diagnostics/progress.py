"""Progress: the dashboard link, fragments done per n-body level with an ETA, each level's result as it completes.

Where it shows (``progress=``):
- ``"auto"`` (default): a live bar in a terminal (stderr is a TTY), an HTML block updated in place in
  Jupyter; otherwise (a batch job's log, a pipe, a file) every line goes to stderr as a plain log line, at INFO,
  through the ``qcmb_dask`` logger (unless logging is configured already: then it goes where that says);
- ``True``: lines on stderr (levels and the summary; the bar too when stderr is a terminal);
- ``False``: the logger only;
- a callable: receives every :class:`~qcmb_dask.worker.analysis.LevelResult` as it arrives.

``callback=`` receives ``(label, nbody, done, total)`` after every fragment (``done`` and ``total`` count
the whole run), for progress displays of your own.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TextIO, Union

from qcmb_dask.diagnostics.displays import displays_for
from qcmb_dask.diagnostics.runlog import RunLog
from qcmb_dask.errors import InvalidArgument, StoreWarning
from qcmb_dask.qcmanybody_adapter import hartree_to_kcal
from qcmb_dask.worker.analysis import LevelIncomplete

logger = logging.getLogger("qcmb_dask")


ProgressArg = Union[bool, str, Callable, None]  # noqa: UP007  (a runtime alias, read on Python 3.10)
FragmentCallback = Callable[[str, int, int, int], None]


class Reporter:
    """A run's displays (:mod:`qcmb_dask.diagnostics.displays`) and its log: what a session tells about the run
    goes to every display, what it counts to the :class:`~qcmb_dask.diagnostics.runlog.RunLog`.

    ``progress`` and ``callback`` choose the displays (:func:`~qcmb_dask.diagnostics.displays.displays_for`);
    ``displays`` gives them instead."""

    def __init__(
        self,
        progress: ProgressArg = "auto",
        stream: TextIO | None = None,
        callback: FragmentCallback | None = None,
        displays: Sequence | None = None,
    ):
        if progress not in (True, False, None, "auto") and not callable(progress):
            raise InvalidArgument(f"progress={progress!r}: expected True, False, 'auto' or a callable.")
        if callback is not None and not callable(callback):
            raise InvalidArgument(f"callback={callback!r}: expected a function of (label, nbody, done, total).")
        if displays is None:
            displays = displays_for(progress, stream or sys.stderr, callback)
        self.displays = list(displays)
        #: the run's log (counts, ETA, the fragment records): what the displays draw, from :meth:`start` on
        self.log: RunLog | None = None
        self._lock = threading.Lock()

    def _each(self, call: Callable, *, locked: bool = True) -> None:
        for display in self.displays:
            if display.locked == locked:
                call(display)

    def start(self, level_sizes: dict[int, int], costs: dict[str, float]) -> None:
        with self._lock:
            self.log = RunLog(level_sizes, costs)
            self._each(lambda d: d.start(self.log))

    def fragment(
        self,
        label: str,
        nbody: int,
        ok: bool = True,
        from_store: bool = False,
        start: float | None = None,
        stop: float | None = None,
        worker: str | None = None,
    ) -> None:
        """A fragment ended (any thread: Dask calls this from its event loop)."""
        with self._lock:
            if self.log is None or not self.log.add(label, nbody, ok, from_store, start, stop, worker):
                return
            self._each(lambda d: d.fragment(self.log, label, nbody))
        self._each(lambda d: d.fragment(self.log, label, nbody), locked=False)

    def say(self, line: str) -> None:
        with self._lock:
            self._each(lambda d: d.say(line))
        self._each(lambda d: d.say(line), locked=False)

    def dashboard(self, link: str | None) -> None:
        if link:
            self.say(f"qcmb_dask: Dask dashboard at {link}")

    def live_page(self, link: str | None) -> None:
        if link:
            self.say(f"qcmb_dask: many-body progress page at {link}")

    def level(self, level, bsse_types: Sequence[str]) -> None:
        if self.log is not None:
            self.log.level_reported[level.nbody] = time.time()
        if isinstance(level, LevelIncomplete):
            self.say(
                f"qcmb_dask: the {level.nbody}-body level cannot be assembled: {len(level.failed)} of its "
                f"{level.ncalculations} calculations failed"
            )
            return
        self._each(lambda d: d.level(level), locked=False)
        with self._lock:
            self._each(lambda d: d.level(level))
        energies = {bt: level.interaction_energy(bt) for bt in bsse_types}
        parts = [
            f"{bt.upper()} IE {value:.10f} Eh ({value * hartree_to_kcal():.4f} kcal/mol)"
            for bt, value in energies.items()
            if value is not None
        ]
        summary = "; ".join(parts) or f"energy {level.return_energy:.10f} Eh"
        self.say(f"qcmb_dask: {level.nbody}-body result ready ({level.ncalculations} calculations): {summary}")

    def finish(self) -> None:
        with self._lock:
            if self.log is not None:
                self._each(lambda d: d.finish(self.log))

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


class _Stderr(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is when it writes (tests and notebooks replace it)."""

    def emit(self, record):
        self.stream = sys.stderr
        super().emit(record)


def log_to_stderr_when_unwatched() -> None:
    """Nothing watches (a batch job, a pipe): the ``qcmb_dask`` logger's lines go to stderr at INFO, once per process.

    Left alone where logging is configured: a handler on the ``qcmb_dask`` or the root logger (``logging.
    basicConfig``, a framework's), or ``qcmb_dask`` named in the Dask config's ``logging:`` section (which
    distributed applies when it is imported, so it is imported here).
    """
    import dask.config

    if "qcmb_dask" in (dask.config.get("logging", default={}) or {}):
        import distributed  # noqa: F401  applies the Dask config's logging section

        return
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = _Stderr(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def in_jupyter() -> bool:
    """A Jupyter kernel (which can show HTML), not a plain IPython terminal."""
    shell = sys.modules.get("IPython") and getattr(sys.modules["IPython"], "get_ipython", lambda: None)()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
