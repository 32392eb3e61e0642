"""Test-only QCEngine programs: PySCF underneath, with injected failures. Importable by worker processes."""

from typing import Any, ClassVar

from qcengine.exceptions import ConvergenceError
from qcengine.programs.model import ProgramHarness

from qcmb_dask.programs.pyscf import PySCFHarness


class DimersFailHarness(PySCFHarness):
    """PySCF, except that every calculation with exactly two real molecules of water fails to converge."""

    _defaults: ClassVar[dict[str, Any]] = {**PySCFHarness._defaults, "name": "dimers-fail"}

    def compute(self, input_data, config):
        nreal = sum(input_data.molecule.real) // 3
        if nreal == 2:
            raise ConvergenceError("injected: this dimer never converges")
        return super().compute(input_data, config)


#: Calls of FaultyHarness in this process (``store_fails_after`` counts them).
_CALLS_HERE: dict[str, int] = {}

#: One random sequence per seed and process: a seeded run fails the same calls every time.
_RNGS: dict[Any, Any] = {}


class FaultyHarness(PySCFHarness):
    """PySCF with faults injected, for tests that break things on purpose. Configured through ``extras``:

    - ``log``: a file that gets one line per call, ``<nreal> <event> <pid>`` (events: start, done), so
      tests count calculations across worker processes (appends of one short line are atomic);
    - ``sleep``: seconds every call sleeps first (keeps a run going long enough to be interrupted);
    - ``hang_nreal``: calculations with this many real waters sleep for an hour (a hung program);
    - ``crash_nreal``: calculations with this many real waters end their process (``os._exit``);
    - ``fail_nreal``: calculations with this many real waters fail with an InputError (deterministic);
    - ``random_failure``, ``seed``: every call fails with a RandomError with this probability;
    - ``fallback_nreal``: calculations with this many real waters do not converge unless a level shift is set;
    - ``store_fails_on_worker``, ``store_fails_after``: on the Dask worker of this name, after this many calls,
      every write to the result store fails from then on (as a disk that fills or goes read-only under it).
    """

    _defaults: ClassVar[dict[str, Any]] = {**PySCFHarness._defaults, "name": "faulty"}

    def compute(self, input_data, config):
        import os
        import random
        import time

        from qcengine.exceptions import InputError, RandomError

        rules = self.extras or {}
        nreal = sum(input_data.molecule.real) // 3
        self._log(rules, nreal, "start")
        self._maybe_break_the_store(rules)
        time.sleep(rules.get("sleep", 0))
        if nreal == rules.get("hang_nreal"):
            time.sleep(3600)
        if nreal == rules.get("crash_nreal"):
            os._exit(13)
        if nreal == rules.get("fail_nreal"):
            raise InputError(f"injected: {nreal}-water calculations always fail")
        if rules.get("random_failure"):
            rng = _RNGS.setdefault(rules.get("seed", 0), random.Random(rules.get("seed", 0)))
            if rng.random() < rules["random_failure"]:
                self._log(rules, nreal, "random_error")
                raise RandomError("injected: transient failure")
        if nreal == rules.get("fallback_nreal") and not input_data.specification.keywords.get("level_shift"):
            raise ConvergenceError("injected: converges only with a level shift")
        result = super().compute(input_data, config)
        self._log(rules, nreal, "done")
        return result

    @staticmethod
    def _maybe_break_the_store(rules):
        if "store_fails_on_worker" not in rules:
            return
        try:
            from distributed import get_worker

            name = get_worker().name
        except (ImportError, ValueError):
            return
        _CALLS_HERE["n"] = _CALLS_HERE.get("n", 0) + 1
        if str(name) == str(rules["store_fails_on_worker"]) and _CALLS_HERE["n"] > rules.get("store_fails_after", 0):
            import errno

            from qcmb_dask import store

            def read_only(f, data):
                raise OSError(errno.EROFS, "Read-only file system")

            store._write_bytes = read_only  # this worker process only

    @staticmethod
    def _log(rules, nreal, event):
        import os

        if rules.get("log"):
            with open(rules["log"], "a") as f:
                f.write(f"{nreal} {event} {os.getpid()}\n")


def calls(log, event="start"):
    """How many calculations a FaultyHarness log shows (``event`` "start": begun, "done": finished)."""
    import pathlib

    path = pathlib.Path(log)
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if line.split()[1] == event)


class UnregisteredHarness(FaultyHarness):
    """The faulty program under a name no worker has registered: build_graph must bring it along."""

    _defaults: ClassVar[dict[str, Any]] = {**FaultyHarness._defaults, "name": "never-registered"}


class SleepyHarness(PySCFHarness):
    """No QC at all: each calculation sleeps ``extras["sleep"]`` seconds and returns -1 Eh per real atom; a
    calculation of more than one water whose geometry hashes to a multiple of ``extras["fail_every"]`` fails
    (deterministic, about one in that many). For runs of thousands of fragments where only the bookkeeping is
    under test."""

    _defaults: ClassVar[dict[str, Any]] = {**PySCFHarness._defaults, "name": "sleepy"}

    def compute(self, input_data, config):
        import time

        from qcelemental.models.v2 import AtomicResult, Provenance
        from qcengine.exceptions import InputError

        rules = self.extras or {}
        time.sleep(rules.get("sleep", 0))
        molecule = input_data.molecule
        nreal = int(sum(molecule.real))
        if (
            nreal > 3
            and rules.get("fail_every")
            and hash(tuple(molecule.geometry.ravel().tolist())) % rules["fail_every"] == 0
        ):
            raise InputError("injected: this geometry always fails")
        energy = -1.0 * nreal
        return AtomicResult(
            input_data=input_data,
            molecule=molecule,
            properties={"return_energy": energy},
            return_result=energy,
            success=True,
            provenance=Provenance(creator="sleepy", version="0", routine="tests.fake_programs"),
        )


class ThreadSafeSleepyHarness(SleepyHarness):
    """:class:`SleepyHarness` declaring itself thread-safe: several of its fragments may share a worker process."""

    _defaults: ClassVar[dict[str, Any]] = {**SleepyHarness._defaults, "name": "sleepy-threads", "thread_safe": True}


class WrongShapeHarness(SleepyHarness):
    """:class:`SleepyHarness` with zero gradients, except that every dimer's gradient has one atom: a result its
    calculation accepts and no analysis can read."""

    _defaults: ClassVar[dict[str, Any]] = {**SleepyHarness._defaults, "name": "wrong-shape"}

    def compute(self, input_data, config):
        from qcelemental.models.v2 import AtomicResult, Provenance

        molecule = input_data.molecule
        nreal = int(sum(molecule.real))
        natom = 1 if nreal == 6 else len(molecule.symbols)
        gradient = [[0.0, 0.0, 0.0]] * natom
        return AtomicResult(
            input_data=input_data,
            molecule=molecule,
            properties={"return_energy": -1.0 * nreal, "calcinfo_natom": natom, "return_gradient": gradient},
            return_result=gradient,
            success=True,
            provenance=Provenance(creator="wrong-shape", version="0", routine="tests.fake_programs"),
        )


class UncheckedHarness(ProgramHarness):
    """A program that checks nothing before it runs, as most QCEngine harnesses: no ``check_request``, so only
    running it finds a keyword it refuses. PySCF underneath (which refuses, at run time, what PySCF cannot use);
    ``extras["log"]`` gets a line per call, as for FaultyHarness."""

    _defaults: ClassVar[dict[str, Any]] = {**PySCFHarness._defaults, "name": "unchecked"}

    @staticmethod
    def found(raise_error: bool = False) -> bool:
        return PySCFHarness.found(raise_error)

    def get_version(self) -> str:
        return PySCFHarness().get_version()

    def compute(self, input_data, config):
        FaultyHarness._log(self.extras or {}, sum(input_data.molecule.real) // 3, "start")
        return PySCFHarness().compute(input_data, config)


class ToyHarness(PySCFHarness):
    """No QC: a closed-form energy of the fragment's geometry (every pair of real atoms and every real-ghost pair
    attract by a short-ranged exponential, each real atom adds a constant, charge and multiplicity shift it),
    with its analytic gradient and a Hessian of differences of that gradient. Deterministic and milliseconds per
    calculation, so that the fuzz tests can compare each accepted input with QCManyBody's own computer. Checks
    requests as PySCF does (methods, bases, keywords)."""

    _defaults: ClassVar[dict[str, Any]] = {**PySCFHarness._defaults, "name": "toy"}

    def compute(self, input_data, config):
        import numpy as np
        from qcelemental.models.v2 import AtomicResult, Provenance

        FaultyHarness._log(self.extras or {}, 0, "start")
        molecule = input_data.molecule
        xyz = np.asarray(molecule.geometry, dtype=float).reshape(-1, 3)
        real = np.asarray(molecule.real, dtype=bool)
        shift = 0.1 * float(molecule.molecular_charge) + 0.05 * (float(molecule.molecular_multiplicity) - 1)
        energy = -0.5 * float(np.sum(np.asarray(molecule.atomic_numbers)[real])) + shift + _toy_pairs(xyz, real)[0]
        driver = input_data.specification.driver.value
        properties = {"return_energy": energy, "calcinfo_natom": len(xyz)}
        result = energy
        if driver in ("gradient", "hessian"):
            gradient = _toy_pairs(xyz, real)[1]
            properties["return_gradient"] = gradient
            result = gradient
        if driver == "hessian":
            step, n = 1e-5, xyz.size
            hessian = np.zeros((n, n))
            for k in range(n):
                plus, minus = xyz.copy().ravel(), xyz.copy().ravel()
                plus[k] += step
                minus[k] -= step
                hessian[k] = (
                    _toy_pairs(plus.reshape(-1, 3), real)[1].ravel() - _toy_pairs(minus.reshape(-1, 3), real)[1].ravel()
                ) / (2 * step)
            properties["return_hessian"] = hessian
            result = hessian
        return AtomicResult(
            input_data=input_data,
            molecule=molecule,
            properties=properties,
            return_result=result,
            success=True,
            provenance=Provenance(creator="toy", version="0", routine="tests.fake_programs"),
        )


def _toy_pairs(xyz, real):
    """The pair energy and its gradient: -0.01 exp(-0.3 r) per real pair, -0.001 exp(-0.3 r) per real-ghost pair."""
    import numpy as np

    energy, gradient = 0.0, np.zeros_like(xyz)
    for i in range(len(xyz)):
        for j in range(i + 1, len(xyz)):
            if not (real[i] or real[j]):
                continue
            weight = 0.01 if real[i] and real[j] else 0.001
            d = xyz[i] - xyz[j]
            r = float(np.linalg.norm(d))
            term = -weight * np.exp(-0.3 * r)
            energy += term
            force = -0.3 * term * d / r  # d(term)/d(xyz_i)
            gradient[i] += force
            gradient[j] -= force
    return energy, gradient


class FakeGPUHarness(PySCFHarness):
    """PySCF on the CPU standing in for PySCF on a GPU, for placement tests on machines without one.

    Declares the GPU device as the shipped harness does (so qcmb_dask places its fragments and tells each where
    with the keyword ``device``), and records in ``extras["fake_gpu"]`` where each calculation ran: the device it
    was told, the worker's GPU resource and ``CUDA_VISIBLE_DEVICES``, and whether it held its card alone. A
    fragment told ``gpu`` on a worker without a GPU resource fails: that placement is the bug under test.
    ``extras["oom_nreal"]``: calculations with this many real waters run out of "GPU memory" unless alone on
    their card (or on the CPU), as the shipped harness reports it. ``extras["die_once"]``: a file; the first GPU
    calculation that finds it missing creates it and ends its worker process (a GPU worker that dies).
    """

    _defaults: ClassVar[dict[str, Any]] = {**PySCFHarness._defaults, "name": "fake-gpu"}

    @staticmethod
    def gpu_unavailable() -> str | None:
        return None  # its "GPU" is the CPU

    def compute(self, input_data, config):
        import os

        from qcengine.exceptions import InputError, ResourceError

        from qcmb_dask.programs.pyscf import gpu

        keywords = dict(input_data.specification.keywords)
        told = keywords.get("device", "cpu")
        resource = 0.0
        try:
            from distributed import get_worker

            resource = float(get_worker().state.total_resources.get("GPU", 0))
        except (ImportError, ValueError):
            pass
        if told == "gpu" and not resource:
            raise InputError("injected: a fragment placed on a GPU ran on a worker without one")
        marker = (self.extras or {}).get("die_once")
        if told == "gpu" and marker and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        alone = gpu.ALONE.get()
        nreal = sum(input_data.molecule.real) // 3
        if told == "gpu" and nreal == (self.extras or {}).get("oom_nreal") and not alone:
            raise ResourceError(f"{gpu.GPU_OUT_OF_MEMORY} (injected: cupy could not allocate 12 GiB)")
        keywords["device"] = "cpu"
        spec = input_data.specification.model_copy(update={"keywords": keywords})
        result = super().compute(input_data.model_copy(update={"specification": spec}), config)
        seen = {"told": told, "gpu_resource": resource, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "alone": alone}
        return result.model_copy(update={"extras": {**result.extras, "fake_gpu": seen}})
