"""Where a run is shown: one small protocol, one class per place.

A display is told five things: the run started (with its :class:`~qcmb_dask.diagnostics.runlog.RunLog`), a
fragment ended, a level's result is ready, a line to say, the run finished. It draws from the run log, which
counts; it keeps nothing of its own but what drawing needs. :func:`displays_for` is the one place that chooses
displays from ``progress=`` and ``callback=``; a new place to show a run (a web hook, a file) is one class here.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Callable
from typing import Protocol, TextIO

from qcmb_dask.diagnostics.runlog import RunLog
from qcmb_dask.planning.cost import duration

logger = logging.getLogger("qcmb_dask")

#: seconds between progress lines in a log (a batch job's, a pipe's), where no live bar can be drawn
LOG_EVERY_S = 60.0
#: seconds between redraws of a live bar or block (a run of 10^5 fragments must not redraw 10^5 times)
REDRAW_EVERY_S = 0.2


class Display(Protocol):
    #: False: called outside the run's lock (user code, which may be slow or call back into the run)
    locked: bool

    def start(self, log: RunLog) -> None: ...
    def fragment(self, log: RunLog, label: str, nbody: int) -> None: ...
    def level(self, level) -> None: ...
    def say(self, line: str) -> None: ...
    def finish(self, log: RunLog) -> None: ...


class LogLines:
    """Every line to the ``qcmb_dask`` logger at INFO; where nothing else watches (a batch job's log, a pipe),
    the progress line too, every :data:`LOG_EVERY_S` seconds."""

    locked = True

    def __init__(self, progress_lines: bool = False, level: int = logging.INFO):
        self.progress_lines = progress_lines
        self.level_no = level
        self._last = time.time()

    def start(self, log: RunLog) -> None:
        pass

    def fragment(self, log: RunLog, label: str, nbody: int) -> None:
        if self.progress_lines and time.time() - self._last >= LOG_EVERY_S:
            self._last = time.time()
            logger.log(self.level_no, log.line())

    def level(self, level) -> None:
        pass

    def say(self, line: str) -> None:
        logger.log(self.level_no, line)

    def finish(self, log: RunLog) -> None:
        pass


class Terminal:
    """Lines on a stream (stderr); where it is a terminal, the progress line redrawn in place beneath them."""

    locked = True

    def __init__(self, stream: TextIO, live_bar: bool):
        self.stream = stream
        self.live_bar = live_bar
        self._log: RunLog | None = None
        self._shown = False
        self._last_draw = 0.0

    def start(self, log: RunLog) -> None:
        self._log = log
        self._draw(force=True)

    def fragment(self, log: RunLog, label: str, nbody: int) -> None:
        self._draw(force=log.ndone == log.ntotal)

    def level(self, level) -> None:
        pass

    def say(self, line: str) -> None:
        self._clear()  # a line is never printed over the bar: the bar comes back beneath it
        print(line, file=self.stream, flush=True)
        self._draw(force=True)

    def finish(self, log: RunLog) -> None:
        self._draw(force=True)
        self._clear()

    def _draw(self, force: bool) -> None:
        log = self._log
        now = time.time()
        if log is None or not self.live_bar or (not force and now - self._last_draw < REDRAW_EVERY_S):
            return
        self._last_draw = now
        self.stream.write("\r\033[K" + log.line())
        self.stream.flush()
        self._shown = True

    def _clear(self) -> None:
        if self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._shown = False


class Notebook:
    """An HTML block in Jupyter, updated in place: a bar per level, the count and ETA, the lines said so far."""

    locked = True

    def __init__(self):
        self._handle = None
        self._lines: list[str] = []
        self._last_draw = 0.0
        self._log: RunLog | None = None

    def start(self, log: RunLog) -> None:
        self._log = log
        self._draw(force=True)

    def fragment(self, log: RunLog, label: str, nbody: int) -> None:
        self._draw(force=log.ndone == log.ntotal)

    def level(self, level) -> None:
        pass

    def say(self, line: str) -> None:
        self._lines.append(line)
        self._draw(force=True)

    def finish(self, log: RunLog) -> None:
        self._draw(force=True)

    def _draw(self, force: bool) -> None:
        log = self._log
        now = time.time()
        if log is None or (not force and now - self._last_draw < REDRAW_EVERY_S):
            return
        self._last_draw = now
        from IPython.display import HTML, display

        rows = "".join(
            f"<tr><td>{n}-body</td><td><progress value='{log.done[n]}' max='{log.total[n]}'>"
            f"</progress></td><td>{log.done[n]}/{log.total[n]}</td></tr>"
            for n in sorted(log.total)
            if log.total[n]
        )
        eta = log.eta()
        lines = "".join(f"<div>{_linked(html.escape(line))}</div>" for line in self._lines)
        content = HTML(
            f"<div class='qcmb-dask-progress'><table>{rows}</table>"
            f"<div>{log.ndone}/{log.ntotal} done"
            f"{'' if eta is None else ', ETA ' + duration(eta)}</div>{lines}</div>"
        )
        if self._handle is None:
            self._handle = display(content, display_id=True)
        else:
            self._handle.update(content)


class Callbacks:
    """The user's own display: ``callback(label, nbody, done, total)`` after every fragment, and ``progress=f``
    with every complete k-body :class:`~qcmb_dask.worker.analysis.LevelResult`."""

    locked = False

    def __init__(self, fragment: Callable | None = None, level: Callable | None = None):
        self.on_fragment = fragment
        self.on_level = level

    def start(self, log: RunLog) -> None:
        pass

    def fragment(self, log: RunLog, label: str, nbody: int) -> None:
        if self.on_fragment is not None:
            self.on_fragment(label, nbody, log.ndone, log.ntotal)

    def level(self, level) -> None:
        if self.on_level is not None:
            self.on_level(level)

    def say(self, line: str) -> None:
        pass

    def finish(self, log: RunLog) -> None:
        pass


def displays_for(progress, stream: TextIO, callback: Callable | None = None) -> list:
    """The displays ``progress=`` and ``callback=`` ask for (see :mod:`qcmb_dask.diagnostics.progress`)."""
    from qcmb_dask.diagnostics.progress import in_jupyter, isatty, log_to_stderr_when_unwatched

    tty = isatty(stream)
    notebook = progress == "auto" and not tty and in_jupyter()
    unwatched = progress == "auto" and not tty and not notebook
    if unwatched:
        log_to_stderr_when_unwatched()
    displays: list = [LogLines(progress_lines=unwatched)]
    if progress is True or (progress == "auto" and tty):
        displays.append(Terminal(stream, live_bar=tty))
    elif notebook:
        displays.append(Notebook())
    if callback is not None or callable(progress):
        displays.append(Callbacks(fragment=callback, level=progress if callable(progress) else None))
    return displays


def _linked(text: str) -> str:
    """Addresses in a line of (escaped) text as links: the dashboard and the many-body page."""
    return re.sub(r"(https?://[^\s<]+)", r"<a href='\1' target='_blank'>\1</a>", text)
