"""Every exception and warning of qcmb_dask, in one place (a leaf: imported by every floor, importing none).

Fragment errors name the fragment: label, n-body level, program, method/basis, and QCEngine's error type.
Input errors name the field. Nothing here imports Dask.
"""

from __future__ import annotations


class FragmentError(RuntimeError):
    """One fragment calculation failed.

    ``error_type`` keeps QCEngine's vocabulary (``input_error``, ``convergence_error``,
    ``random_error``, ``unknown_error``, ...) so callers can decide what is worth retrying.
    """

    def __init__(
        self,
        label: str,
        nbody: int,
        program: str,
        method: str,
        basis: str,
        error_type: str,
        message: str,
        record: str | None = None,
    ):
        self.label = label
        self.nbody = nbody
        self.program = program
        self.method = method
        self.basis = basis
        self.error_type = error_type
        self.message = message
        #: the file with QCEngine's whole FailedOperation (input, error, traceback), when a store was on
        self.record = record
        where = f" [input and full error: {record}]" if record else ""
        super().__init__(f"{self.heading()}: {message}{where}")

    def heading(self) -> str:
        return f"Fragment {self.label} ({self.nbody}-body, {self.program} {self.method}/{self.basis}) failed with " + (
            self.error_type
        )

    @property
    def reason(self) -> str:
        """The failure in one line: the program's own last error line where its output is in the message."""
        return one_line_reason(self.message)

    def summary(self) -> str:
        """One line: the fragment, the program, the error type, the reason, and where the whole record is."""
        where = f" [input and full error: {self.record}]" if self.record else ""
        return f"{self.heading()}: {self.reason}{where}"

    def __reduce__(self):
        # Keep every field through pickling: the error travels from a worker to the client.
        return (
            type(self),
            (self.label, self.nbody, self.program, self.method, self.basis, self.error_type, self.message, self.record),
        )


class FragmentsFailed(RuntimeError):
    """One or more fragment calculations failed; every other fragment finished (and is stored).

    ``failures`` lists a :class:`FragmentError` per failed fragment; ``levels_done`` the n-body
    truncations that could still be assembled (``compute(..., on_error="partial")`` returns them).
    """

    #: failures listed in the message, per kind of failure, and kinds listed; all of them are in ``failures``
    SHOWN_PER_KIND = 3
    KINDS_SHOWN = 4

    def __init__(self, failures, store=None, levels_done=()):
        # store: the store's path; False when it was off; None when unknown (build_graph)
        self.failures = list(failures)
        self.store = store
        self.levels_done = list(levels_done)
        lines = [f"{len(self.failures)} fragment calculation(s) failed:"]
        lines += summary_lines(self.failures, self.SHOWN_PER_KIND, self.KINDS_SHOWN)
        if store:
            lines.append(
                f"Every other fragment finished and is stored in {store}. Fix the cause and run the same input "
                "again with the same cache: only the missing fragments are computed."
            )
        elif store is False:
            lines.append("The result store was off (cache=False): a rerun computes every fragment again.")
        if self.levels_done:
            lines.append(
                f"The expansion is complete through {max(self.levels_done)}-body: on_error='partial' returns it "
                "with this list instead of raising."
            )
        super().__init__("\n".join(lines))

    def __reduce__(self):
        return (type(self), (self.failures, self.store, self.levels_done))


class InputsFailed(RuntimeError):
    """Some inputs of :func:`qcmb_dask.compute_many` could not be run or failed; every other input finished.

    ``results``: one entry per input, in order: its result, or None where it failed. ``failures``: input
    index -> the error (an :class:`InvalidInput` refused before anything ran, or :class:`FragmentsFailed`).
    ``names``: input index -> how the message names it (its file, or ``input <i>``).
    """

    def __init__(self, results, failures, names):
        self.results = list(results)
        self.failures = dict(failures)
        self.names = dict(names)
        lines = [f"{len(self.failures)} of {len(self.results)} inputs failed; the other results are in .results:"]
        for index, error in sorted(self.failures.items()):
            first, *rest = str(error).splitlines() or [type(error).__name__]
            lines.append(f"  - {self.names.get(index, f'input {index + 1}')}: {first}")
            lines += [f"      {line}" for line in rest[:4]]
        super().__init__("\n".join(lines))

    def __reduce__(self):
        return (type(self), (self.results, self.failures, self.names))


def summary_lines(failures, per_kind: int = 3, kinds: int = 4) -> list:
    """A few lines for many failures: one line each for the first ``per_kind`` of each kind (same program,
    method, basis, error type and reason), then how many more of that kind; at most ``kinds`` kinds."""
    groups: dict = {}
    for failure in failures:
        kind = (failure.program, failure.method, failure.basis, failure.error_type, failure.reason)
        groups.setdefault(kind, []).append(failure)
    lines = []
    for same in list(groups.values())[:kinds]:
        lines += [f"  - {f.summary()}" for f in same[:per_kind]]
        if len(same) > per_kind:
            lines.append(f"    ... and {len(same) - per_kind} more fragment(s) that failed the same way")
    rest = sum(len(same) for same in list(groups.values())[kinds:])
    if rest:
        lines.append(f"  ... and {rest} more failure(s) of {len(groups) - kinds} other kind(s)")
    lines.append("  (every failure in full: .failures in Python, `qcmb-dask failures --show LABEL` from the store)")
    return lines


#: QCEngine's message of a failed program run: its input, output, stderr and traceback, in sections.
_SECTIONS = ("INPUT:", "OUTPUT:", "STDERR:", "TRACEBACK:")


def one_line_reason(message: str, width: int = 200) -> str:
    """The program's own reason, in one line: the last line of its output that speaks of an error (then its
    stderr's first such line); for a message without the program's output, its first line."""
    sections = _split_sections(message)
    # The output follows the input (programs such as NWChem echo their input, and QCEngine may not head it).
    output = sections.get("INPUT:", []) + sections.get("OUTPUT:", [])
    for lines, pick in ((output, -1), (sections.get("STDERR:", []), 0)):
        errors = [line.strip() for line in lines if "error" in line.lower() and line.strip(" -=*")]
        if errors:
            return _shortened(errors[pick], width)
    lines = [line.strip() for line in message.splitlines() if line.strip() and line.strip() != "NoneType: None"]
    if not lines:
        return ""
    if "Traceback (most recent call last):" in message:  # a Python exception: its last line says what it was
        return _shortened(lines[-1], width)
    return _shortened(lines[0].removesuffix("INPUT:").strip() or lines[0], width)


def _split_sections(message: str) -> dict:
    sections, current = {"": []}, ""
    for line in message.splitlines():
        stripped = line.strip()
        starts = next((s for s in _SECTIONS if stripped.startswith(s) or stripped.endswith(" " + s)), None)
        if starts is not None:
            if stripped != starts:  # "QCEngine Unknown Error: INPUT:": the words before belong to the heading
                sections[""].append(stripped[: -len(starts)].strip())
            current = starts
            sections.setdefault(current, [])
            continue
        sections.setdefault(current, []).append(line)
    return sections


def _shortened(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


class InvalidInput(ValueError):
    """The many-body input (or an argument of the call) cannot be run; nothing was submitted."""

    what = "many-body input"

    def __init__(self, problem: str):
        self.problem = problem
        super().__init__(f"Invalid {self.what}: {problem}")

    def __reduce__(self):
        return type(self), (self.problem,)


class InvalidArgument(InvalidInput):
    """An argument of the call (or its value in the Dask config) cannot be used; nothing was submitted."""

    what = "argument"


class UnknownArgument(InvalidArgument, TypeError):
    """A keyword no entry point takes (a typo): refused like any bad argument, and still the ``TypeError`` Python
    raises for an unexpected keyword."""

    def __init__(self, problem: str):
        InvalidArgument.__init__(self, problem)


class InputFileMissing(InvalidInput, FileNotFoundError):
    """An input or molecule file that is not there, or is a directory: refused like any bad input (exit code 2),
    and still a ``FileNotFoundError`` for code that catches that."""

    def __init__(self, problem: str):
        InvalidInput.__init__(self, problem)


class InputOfWrongType(InvalidInput, TypeError):
    """An input that is not a ManyBodyInput, a dict or a file path (or an argument of the wrong type): refused like
    any bad input (exit code 2), and still a ``TypeError`` for code that catches that."""

    def __init__(self, problem: str):
        InvalidInput.__init__(self, problem)


class InputWarning(UserWarning):
    """The input runs, and gives QCManyBody's answer, but something in it may not be what the user meant."""


class SettingWarning(UserWarning):
    """A batch setting from a profile, the Dask config or cluster_options was changed or read differently; the
    warning says what was used instead."""


class StoreWarning(UserWarning):
    """The store could not be read or written; the run goes on and its answer is unaffected."""


class SchedulerLost(RuntimeError):
    """The scheduler stopped answering in the middle of a run (killed, its node or network gone).

    Every calculation that finished before is in the result store (when one was on): run the same input
    again, with the same cache, on a running scheduler, and only the missing ones are computed.
    """

    def __init__(self, address: str, stored: int | None = None, store=None):
        self.address = address
        #: results this run wrote to the store before the scheduler went (None: the store was off)
        self.stored = stored
        self.store = store
        if store:
            kept = (
                f"{stored} calculation(s) of this run finished before and are in the result store at {store}. Start "
                "a scheduler again (or choose another cluster) and run the same input with the same cache: only "
                "the missing calculations are computed."
            )
        else:
            kept = "The result store was off (cache=False): a rerun computes every calculation again."
        super().__init__(f"The scheduler at {address} stopped answering in the middle of the run. {kept}")

    def __reduce__(self):
        return (type(self), (self.address, self.stored, self.store))


class OptimizationNotConverged(RuntimeError):
    """The optimizer took its most steps (``maxiter``) without converging. Every point is in the result store:
    the same call with a larger ``maxiter`` replays them and goes on (``maxiter`` does not name the optimization).
    """

    def __init__(self, points: int, energy: float, gradient_rms: float, resumable: bool):
        self.points, self.energy, self.gradient_rms = points, energy, gradient_rms
        then = (
            "Run it again with a larger maxiter (--maxiter): its points are in the result store and are replayed."
            if resumable
            else "Without a result store (cache=False) a new run starts from the beginning."
        )
        super().__init__(
            f"The optimization did not converge in {points} points (last energy {energy:.10f} Eh, gradient rms "
            f"{gradient_rms:.2e} Eh/bohr). {then}"
        )


class WorkersNeverArrived(RuntimeError):
    """Jobs were submitted but no worker connected in time; nothing was computed, the jobs are cancelled."""


class JobsRefused(WorkersNeverArrived):
    """The batch system refused the job (``sbatch``/``qsub`` failed): its message and the job script."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP reached the process running ``compute`` (``scancel`` of a driver job, its walltime, a
    closed login session). It takes the Ctrl-C path: what is queued is cancelled, batch jobs too, finished
    fragments stay in the store; a rerun computes only what is missing. ``qcmb-dask`` exits with 128 + the
    signal's number (143 for SIGTERM, 129 for SIGHUP)."""

    def __init__(self, signum: int):
        import signal

        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"{self.signal_name} received")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum
