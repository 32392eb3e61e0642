"""cluster="mpi": the ranks of one mpirun (dask-mpi) run the expansion inside an allocation."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import qcmb_dask

from .conftest import NOCP, mbe_input

ROOT = Path(__file__).resolve().parent.parent


def _mpi_usable() -> bool:
    if not shutil.which("mpirun"):
        return False
    probe = "import dask_mpi; from mpi4py import MPI; MPI.Get_version()"
    return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode == 0


requires_mpi = pytest.mark.skipif(
    not _mpi_usable(), reason="mpirun, mpi4py with an MPI library or dask-mpi missing (apt-get install openmpi-bin)"
)


def mpirun(nranks: int, script: Path, timeout: float = 240, arguments=()) -> subprocess.CompletedProcess:
    command = ["mpirun", "-n", str(nranks), "--oversubscribe"]
    if os.geteuid() == 0:
        command.append("--allow-run-as-root")  # Open MPI refuses root otherwise (CI runs as root)
    return subprocess.run(
        [*command, sys.executable, str(script), *arguments],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@requires_mpi
@pytest.mark.mpi
@pytest.mark.slow
def test_an_mpirun_of_four_ranks_gives_qcmanybodys_answer(tmp_path, reference):
    script = tmp_path / "mbe.py"
    script.write_text(
        textwrap.dedent(
            """
            import qcmb_dask
            from tests.conftest import NOCP, mbe_input
            result = qcmb_dask.compute(mbe_input(3, keywords=NOCP), "mpi", cache=False, progress=False)
            again = qcmb_dask.compute(mbe_input(2, keywords=NOCP), "mpi", cache=False, progress=False)
            print("ENERGY", repr(result.return_result), repr(again.return_result), flush=True)
            address = result.extras["qcmb_dask"]["cluster"]["scheduler"]
            import subprocess, sys  # a process of this user without the ranks' credentials is turned away
            probe = sys.argv[1]
            seen = subprocess.run([sys.executable, probe, address], capture_output=True, text=True).stdout.strip()
            print(seen, address, flush=True)
            """
        )
    )
    probe = tmp_path / "probe.py"
    probe.write_text(
        textwrap.dedent(
            """
            import sys
            from distributed import Client
            try:
                Client(sys.argv[1].replace("tls://", "tcp://"), timeout="5s").close()
                print("ADMITTED")
            except (OSError, TimeoutError):
                print("REFUSED")
            """
        )
    )
    out = mpirun(4, script, arguments=[str(probe)])
    lines = [line for line in out.stdout.splitlines() if line.startswith("ENERGY")]
    assert out.returncode == 0 and len(lines) == 1, out.stdout[-3000:] + out.stderr[-3000:]
    energy, dimer = (float(x) for x in lines[0].split()[1:])
    assert any(line.startswith("REFUSED tls://") for line in out.stdout.splitlines()), out.stdout[-3000:]
    assert energy == pytest.approx(reference.return_result, abs=1e-9)
    assert dimer == pytest.approx(qcmb_dask.compute(mbe_input(2, keywords=NOCP), "sync").return_result, abs=1e-9)


@requires_mpi
@pytest.mark.mpi
def test_too_few_ranks_is_refused_before_anything_starts(tmp_path):
    script = tmp_path / "mbe.py"
    script.write_text(
        "import qcmb_dask\nfrom tests.conftest import mbe_input\nqcmb_dask.compute(mbe_input(2), 'mpi', cache=False)\n"
    )
    out = mpirun(2, script, timeout=120)
    assert out.returncode != 0
    assert "launch it with at least 3 ranks" in out.stderr


@requires_mpi
@pytest.mark.mpi
@pytest.mark.slow
def test_the_command_under_mpirun_writes_the_answer_once(tmp_path):
    import json

    from qcmanybody.models.v2 import ManyBodyResult

    from .conftest import assert_same_result, qcmanybody_reference

    command = ["mpirun", "-n", "3", "--oversubscribe"] + (["--allow-run-as-root"] if os.geteuid() == 0 else [])
    trimer = ROOT / "examples" / "water-trimer.json"
    cli = [sys.executable, "-m", "qcmb_dask.cli", "run", str(trimer), "--cluster", "mpi", "--no-cache"]
    out = subprocess.run(
        [*command, *cli, "--out", str(tmp_path / "r.json")], cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("ManyBodyResult written to") == 1  # rank 1 alone speaks
    assert out.stderr.count("Many-body expansion:") == 1  # the plan, printed once
    result = ManyBodyResult(**json.loads((tmp_path / "r.json").read_text()))
    assert_same_result(result, qcmanybody_reference(json.loads(trimer.read_text())))
