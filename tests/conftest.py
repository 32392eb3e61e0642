"""Shared inputs and helpers: small water clusters, QCManyBody's reference runs, result comparison."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

BOHR_PER_ANGSTROM = 1 / 0.52917721067

# compute(cluster=None) runs a plan this small in-process; the tests of workers, faults and the page need
# worker processes, here and in the scripts they start. Tests of that choice set it themselves.
os.environ["DASK_QCMB_DASK__LOCAL__STARTUP_SECONDS"] = "0"

# The fuzz tests (test_fuzz_inputs.py): a bounded, repeatable pass by default (CI's); a deeper one on request with
# `pytest tests/test_fuzz_inputs.py --hypothesis-profile=long`.
settings.register_profile("ci", max_examples=150, deadline=None, derandomize=True, print_blob=True)
settings.register_profile("long", max_examples=2000, deadline=None, print_blob=True)
settings.load_profile("ci")

# Water trimer (Angstrom); the dimer is its first two waters.
WATER_TRIMER_ANGSTROM = [
    ("O", -1.551007, -0.114520, 0.000000),
    ("H", -1.934259, 0.762503, 0.000000),
    ("H", -0.599677, 0.040712, 0.000000),
    ("O", 1.350625, 0.111469, 0.000000),
    ("H", 1.680398, -0.373741, -0.758561),
    ("H", 1.680398, -0.373741, 0.758561),
    ("O", 0.000000, 2.500000, 1.500000),
    ("H", 0.000000, 3.257000, 2.087000),
    ("H", 0.000000, 1.743000, 2.087000),
]


#: a water dimer's atom lines in Angstrom, as an .xyz file's body holds them
WATER_DIMER_ANGSTROM = """
O  -1.551007  -0.114520   0.000000
H  -1.934259   0.762503   0.000000
H  -0.599677   0.040712   0.000000
O   1.350625   0.111469   0.000000
H   1.680398  -0.373741  -0.758561
H   1.680398  -0.373741   0.758561
"""


def water_cluster(nwaters: int, **extra) -> dict:
    atoms = WATER_TRIMER_ANGSTROM[: 3 * nwaters]
    return {
        "symbols": [a[0] for a in atoms],
        "geometry": [x * BOHR_PER_ANGSTROM for a in atoms for x in a[1:]],
        "fragments": [[3 * i, 3 * i + 1, 3 * i + 2] for i in range(nwaters)],
        "fragment_charges": [0] * nwaters,
        "fragment_multiplicities": [1] * nwaters,
        "molecular_charge": 0,
        **extra,
    }


def water_grid(nwaters: int, spacing: float = 3.2) -> dict:
    """``nwaters`` waters on a cubic grid ``spacing`` Angstrom apart (a cluster only bookkeeping tests use)."""
    water = [(s, np.array(xyz)) for s, *xyz in WATER_TRIMER_ANGSTROM[:3]]
    side = int(np.ceil(nwaters ** (1 / 3)))
    symbols, geometry = [], []
    for n in range(nwaters):
        offset = spacing * np.array([n % side, (n // side) % side, n // side**2])
        for symbol, xyz in water:
            symbols.append(symbol)
            geometry.extend((xyz + offset) * BOHR_PER_ANGSTROM)
    return {
        "symbols": symbols,
        "geometry": geometry,
        "fragments": [[3 * i, 3 * i + 1, 3 * i + 2] for i in range(nwaters)],
    }


def mbe_input(
    nwaters: int = 3,
    driver: str = "energy",
    keywords: dict | None = None,
    specs: dict[str, tuple] | None = None,
    program: str = "pyscf",
    protocols: dict | None = None,
    atomic_keywords: dict | None = None,
) -> dict:
    """A v2 ManyBodyInput dict. ``specs`` maps model-chemistry name -> (method, basis)."""
    specs = specs or {"(auto)": ("hf", "sto-3g")}
    spec = {
        "driver": driver,
        "keywords": keywords or {"bsse_type": "cp"},
        "specification": {
            name: {
                "program": program,
                "driver": driver,
                "model": {"method": method, "basis": basis},
                "keywords": dict(atomic_keywords or {}),
            }
            for name, (method, basis) in specs.items()
        },
    }
    if protocols:
        spec["protocols"] = protocols
    return {"molecule": water_cluster(nwaters), "specification": spec}


def qcmanybody_reference(mbin):
    """QCManyBody's sequential ManyBodyComputer on the same input (v1 computer for v1 inputs), with the PySCF
    harness qcmb_dask ships registered (as compute registers it)."""
    import qcmanybody.models.v1 as v1models
    from qcmanybody.models.v2 import ManyBodyInput

    from qcmb_dask.programs import register_shipped

    register_shipped()

    if isinstance(mbin, v1models.ManyBodyInput):
        from qcmanybody.v1 import ManyBodyComputer
    else:
        from qcmanybody.v2 import ManyBodyComputer

        mbin = mbin if isinstance(mbin, ManyBodyInput) else ManyBodyInput(**mbin)
    return ManyBodyComputer.from_manybodyinput(mbin)


_NUMBER = re.compile(r"-?\d+\.\d+(?:[eE][-+]?\d+)?")
_SPACES = re.compile(r" +")


def assert_same_stdout(ours: str, ref: str, atol: float = 1e-6) -> None:
    """Same text; numbers equal to ``atol`` (kcal/mol columns magnify Eh differences 627x). Right-aligned columns
    make a sign a column wider: a zero that rounding left at -1e-16 in one and 0 in the other is the same text."""
    assert _SPACES.sub(" ", _NUMBER.sub("#", ours)) == _SPACES.sub(" ", _NUMBER.sub("#", ref))
    np.testing.assert_allclose(
        [float(x) for x in _NUMBER.findall(ours)], [float(x) for x in _NUMBER.findall(ref)], rtol=0, atol=atol
    )


def _close(a, b, atol):
    if a is None or b is None:
        assert a is None and b is None
    elif isinstance(a, (float, int, np.ndarray, list)) and not isinstance(a, bool):
        np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float), rtol=0, atol=atol)
    else:
        assert a == b


def assert_same_result(ours, ref, *, energy_atol: float = 1e-9, array_atol: float = 1e-8) -> None:
    """The ManyBodyResult fields a user reads are equal: properties, cluster data, return_result, stdout."""
    assert type(ours) is type(ref)
    atol_for = lambda value: energy_atol if np.ndim(value) == 0 else array_atol  # noqa: E731
    _close(ours.return_result, ref.return_result, atol_for(ref.return_result))

    ours_props = ours.properties.model_dump() if hasattr(ours.properties, "model_dump") else ours.properties.dict()
    ref_props = ref.properties.model_dump() if hasattr(ref.properties, "model_dump") else ref.properties.dict()
    assert set(ours_props) == set(ref_props)
    for key, value in ref_props.items():
        if isinstance(value, dict):
            assert set(value) == set(ours_props[key]), key
            for k, v in value.items():
                _close(ours_props[key][k], v, atol_for(v))
        else:
            _close(ours_props[key], value, atol_for(value))

    cluster_props = "cluster_properties" if hasattr(ref, "cluster_properties") else "component_properties"
    ours_cp, ref_cp = getattr(ours, cluster_props), getattr(ref, cluster_props)
    assert list(ours_cp) == list(ref_cp)
    for label, props in ref_cp.items():
        for field in ("return_energy", "return_gradient", "return_hessian", "calcinfo_natom"):
            value = getattr(props, field)
            _close(getattr(ours_cp[label], field), value, atol_for(value))

    cluster_results = "cluster_results" if hasattr(ref, "cluster_results") else "component_results"
    ours_cr, ref_cr = getattr(ours, cluster_results), getattr(ref, cluster_results)
    assert set(ours_cr) == set(ref_cr)
    for label, atomic in ref_cr.items():
        _close(ours_cr[label].return_result, atomic.return_result, atol_for(atomic.return_result))
        assert (ours_cr[label].stdout is None) == (atomic.stdout is None)

    assert_same_stdout(ours.stdout, ref.stdout)
    assert ours.success and ref.success


def nwchem_available() -> bool:
    try:
        import networkx  # noqa: F401  QCEngine's NWChem harness needs it
    except ImportError:
        return False
    return shutil.which("nwchem") is not None


requires_nwchem = pytest.mark.skipif(
    not nwchem_available(),
    reason="nwchem executable or networkx missing (apt-get install nwchem; pip install networkx)",
)


@contextlib.contextmanager
def two_worker_client():
    """A real LocalCluster as ``compute()`` starts one (worker processes with one thread, qcmb_dask's scheduler
    settings), on 2 workers, and a client to it."""
    import dask
    from distributed import Client, LocalCluster

    from qcmb_dask.clusters import scheduler_settings

    with (
        dask.config.set(scheduler_settings()),
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="session")
def local_client():
    """:func:`two_worker_client`, shared by the tests that only use it (startup costs seconds)."""
    with two_worker_client() as client:
        yield client


@pytest.fixture
def embedding_enabled(monkeypatch):
    """QCManyBody accepts embedding charges only with this variable set (its own safety switch)."""
    monkeypatch.setenv("QCMANYBODY_EMBEDDING_CHARGES", "1")


@pytest.fixture(autouse=True)
def _random_dashboard_port_and_no_store():
    """Tests never fight over the dashboard's default port 8787, and never read or fill the user's result
    store: every test computes what it checks unless it passes a ``cache`` of its own."""
    import dask

    import qcmb_dask

    settings = {
        "qcmb_dask.local.dashboard-address": "127.0.0.1:0",
        "qcmb_dask.cache": False,
        "qcmb_dask.local.startup-seconds": 0,
    }
    with dask.config.set(settings):
        yield
    qcmb_dask.close()  # the embedded cluster compute(cluster=None) keeps: each test starts from none


# Faults and the result store: the nocp water trimer through the test-only "faulty" program (PySCF underneath).

NOCP = {"bsse_type": "nocp"}


@pytest.fixture(scope="session")
def reference():
    """QCManyBody's answer for the (H2O)3 nocp HF/STO-3G energy every test here runs."""
    return qcmanybody_reference(mbe_input(3, keywords=NOCP))


@pytest.fixture(autouse=True)
def _faulty_program_known_here():
    """plan() checks programs: the faulty one must be registered in this process, as compute() does."""
    import qcmb_dask

    from .fake_programs import FaultyHarness

    qcmb_dask.programs.register([FaultyHarness()])


def faulty_input(nwaters=3, keywords=NOCP, driver="energy"):
    return mbe_input(nwaters, keywords=keywords, program="faulty", driver=driver)


def assert_same_answer(ours, ref) -> float:
    """Same numbers as QCManyBody on PySCF (the faulty program is PySCF, so its name is the only difference).

    Returns the largest difference in any energy (Eh).
    """
    assert ours.return_result == pytest.approx(ref.return_result, abs=1e-9)
    ours_props, ref_props = ours.properties.model_dump(), ref.properties.model_dump()
    largest = abs(ours.return_result - ref.return_result)
    for key, value in ref_props.items():
        if isinstance(value, (float, int)) and not isinstance(value, bool):
            assert ours_props[key] == pytest.approx(value, abs=1e-9), key
            largest = max(largest, abs(ours_props[key] - value))
    return largest


#: (scenario, what happened, QC calls made, results in the store, answer, seconds), printed after the run.
SCENARIOS: list[tuple] = []


class Scenario:
    """A never-lose-work test's measured figures, for the table printed at the end of the run (README copies it)."""

    def __init__(self, test_name: str):
        self.test_name = test_name
        self.start = time.perf_counter()

    def record(self, scenario: str, outcome: str, *, calls: int, stored="-", answer="-") -> None:
        if isinstance(answer, float):
            answer = f"= QCManyBody (max diff {answer:.0e} Eh)"
        SCENARIOS.append((scenario, outcome, calls, stored, answer, time.perf_counter() - self.start))


@pytest.fixture
def scenario(request):
    return Scenario(request.node.name)


def pytest_terminal_summary(terminalreporter):
    if not SCENARIOS:
        return
    terminalreporter.section("never-lose-work scenarios, measured in this run")
    terminalreporter.write_line("| scenario | what happened | QC calls | stored | answer | wall s |")
    terminalreporter.write_line("|---|---|---|---|---|---|")
    for name, outcome, calls, stored, answer, seconds in SCENARIOS:
        terminalreporter.write_line(f"| {name} | {outcome} | {calls} | {stored} | {answer} | {seconds:.1f} |")


def entries(root):
    return sorted(Path(root).glob("??/*.json"))


def start_as_a_terminal_would(script: Path, stderr_path: Path):
    """``python script`` from the repository root, as a terminal starts a foreground job: its own process
    group (Ctrl-C there signals the whole group) and SIGINT at its default, which a background shell may
    have set to "ignore" for its children. Returns the Popen; stderr goes to ``stderr_path``."""
    import os
    import signal
    import subprocess
    import sys

    def as_a_terminal_would():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.setpgrp()

    root = Path(__file__).resolve().parent.parent
    with open(stderr_path, "w") as stderr:
        return subprocess.Popen(
            [sys.executable, str(script)],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            stderr=stderr,
            preexec_fn=as_a_terminal_would,
        )
