"""Errors that name the fragment: label, n-body level, program, method/basis, QCEngine error type."""

from __future__ import annotations

from typing import Optional


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
        record: Optional[str] = None,
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
