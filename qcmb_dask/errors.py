"""Errors that name the fragment: label, n-body level, program, method/basis, QCEngine error type."""

from __future__ import annotations


class FragmentError(RuntimeError):
    """One fragment calculation failed.

    ``error_type`` keeps QCEngine's vocabulary (``input_error``, ``convergence_error``,
    ``random_error``, ``unknown_error``, ...) so callers can decide what is worth retrying.
    """

    def __init__(self, label: str, nbody: int, program: str, method: str, basis: str, error_type: str, message: str):
        self.label = label
        self.nbody = nbody
        self.program = program
        self.method = method
        self.basis = basis
        self.error_type = error_type
        self.message = message
        super().__init__(
            f"Fragment {label} ({nbody}-body, {program} {method}/{basis}) failed with {error_type}: {message}"
        )

    def __reduce__(self):
        # Keep every field through pickling: the error travels from a worker to the client.
        return (
            type(self),
            (self.label, self.nbody, self.program, self.method, self.basis, self.error_type, self.message),
        )
