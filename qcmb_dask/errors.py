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
        super().__init__(
            f"Fragment {label} ({nbody}-body, {program} {method}/{basis}) failed with {error_type}: {message}{where}"
        )

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

    #: failures listed in the message; all of them are in ``failures``
    SHOWN = 20

    def __init__(self, failures, store=None, levels_done=()):
        # store: the store's path; False when it was off; None when unknown (build_graph)
        self.failures = list(failures)
        self.store = store
        self.levels_done = list(levels_done)
        lines = [f"{len(self.failures)} fragment calculation(s) failed:"]
        lines += [f"  - {f}" for f in self.failures[: self.SHOWN]]
        if len(self.failures) > self.SHOWN:
            lines.append(f"  ... and {len(self.failures) - self.SHOWN} more (all in .failures)")
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


class InputWarning(UserWarning):
    """The input runs, and gives QCManyBody's answer, but something in it may not be what the user meant."""


class StoreWarning(UserWarning):
    """The store could not be read or written; the run goes on and its answer is unaffected."""


class WorkersNeverArrived(RuntimeError):
    """Jobs were submitted but no worker connected in time; nothing was computed, the jobs are cancelled."""


class JobsRefused(WorkersNeverArrived):
    """The batch system refused the job (``sbatch``/``qsub`` failed): its message and the job script."""
