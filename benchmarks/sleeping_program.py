"""A QCEngine program that computes nothing and sleeps as long as a real one would take, for ``walltime.py``.

Each calculation sleeps the cost model's estimate of it (:func:`qcmb_dask.planning.cost.estimate`, from the
fragment's basis functions and atoms, ghosts included, as the planner counts them) times ``scale`` times a
deterministic noise factor (lognormal, median 1, drawn from the fragment's geometry), divided by ``speedup``;
it returns a zero energy. Importable by the workers of batch jobs (their job script starts in this folder).

Every attempt leaves a record in ``extras["log"]``: a line when it starts and one when it ends,
``<start|end> <fragment> <attempt> <pid> <host> <unix time> <planned seconds>``, and a heartbeat file in
``extras["heartbeats"]`` touched every ``HEARTBEAT_S`` seconds while it sleeps, so an attempt whose worker was
killed shows how long it ran (its last heartbeat) though it never wrote its end.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import time
from pathlib import Path
from typing import Any, ClassVar

from qcengine.programs.model import ProgramHarness

#: seconds between two heartbeats of a sleeping attempt (and the step it sleeps in)
HEARTBEAT_S = 0.5


def fragment_id(molecule) -> str:
    """A name every attempt of one calculation shares: its atoms, coordinates and which of them are ghosts
    (``<real atoms>a-<hash>``)."""
    real = [bool(r) for r in molecule.real]
    text = repr((list(molecule.symbols), [round(float(x), 6) for x in molecule.geometry.ravel().tolist()], real))
    return f"{sum(real)}a-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def model_seconds(molecule, method: str, basis: str, driver: str) -> float:
    """The cost model's one-core seconds for this calculation, as the planner estimates it (ghosts included)."""
    from qcmb_dask.planning.cost import basis_functions, estimate

    nbf = sum(basis_functions(basis, symbol) for symbol in molecule.symbols)
    return estimate(nbf, len(molecule.symbols), method, driver)


def noise(ident: str, sigma: float) -> float:
    """A lognormal factor of median 1 drawn from the fragment's own name: every attempt and every run agree."""
    return random.Random(int(hashlib.sha256(ident.encode()).hexdigest()[:16], 16)).lognormvariate(0.0, sigma)


def planned_seconds(molecule, method: str, basis: str, driver: str, rules: dict) -> float:
    """How long this machine's attempt sleeps: model x scale x noise / speedup."""
    site = model_seconds(molecule, method, basis, driver) * rules.get("scale", 1.0)
    return site * noise(fragment_id(molecule), rules.get("sigma", 0.25)) / rules.get("speedup", 1.0)


class InstantHarness(ProgramHarness):
    """A program that is always installed and needs no scratch, threads or memory: the base of the benchmarks'
    fake programs (this one, and ``overhead.py``'s no-op)."""

    _defaults: ClassVar[dict[str, Any]] = {
        "name": "instant",
        "scratch": False,
        "thread_safe": True,
        "thread_parallel": False,
        "node_parallel": False,
        "managed_memory": False,
    }

    @staticmethod
    def found(raise_error: bool = False) -> bool:
        return True

    def get_version(self) -> str:
        return "1"


class SleepingHarness(InstantHarness):
    """Sleeps as a real program would compute (see the module); every result is a zero energy."""

    _defaults: ClassVar[dict[str, Any]] = {**InstantHarness._defaults, "name": "sleeping"}

    def check_request(self, method, basis, driver, keywords, embedded, elements) -> None:
        """Any request is fine: it runs nothing (and so needs no preflight calculation)."""

    def compute(self, input_data, config):
        from qcelemental.models.v2 import AtomicResult, Provenance

        rules = self.extras or {}
        molecule = input_data.molecule
        spec = input_data.specification
        seconds = planned_seconds(molecule, spec.model.method, spec.model.basis, spec.driver.value, rules)
        ident = fragment_id(molecule)
        start = time.time()
        attempt = f"{ident}.{os.getpid()}.{time.time_ns()}"
        heartbeat = Path(rules["heartbeats"]) / attempt if rules.get("heartbeats") else None
        self._log(rules, "start", attempt, start, seconds)
        while (left := start + seconds - time.time()) > 0:
            if heartbeat is not None:
                heartbeat.touch()
            time.sleep(min(HEARTBEAT_S, left))
        self._log(rules, "end", attempt, time.time(), seconds)
        return AtomicResult(
            input_data=input_data,
            molecule=molecule,
            return_result=0.0,
            success=True,
            properties={"return_energy": 0.0},
            provenance=Provenance(creator="sleeping", version="1", routine="benchmarks.sleeping_program"),
        )

    @staticmethod
    def _log(rules: dict, event: str, attempt: str, when: float, seconds: float) -> None:
        if rules.get("log"):
            ident, pid, _ = attempt.split(".")
            line = f"{event} {ident} {attempt} {pid} {socket.gethostname()} {when:.3f} {seconds:.3f}\n"
            with open(rules["log"], "a") as f:  # one short line per write: appends stay whole
                f.write(line)
