"""Geometry optimizations: qcmb_dask.optimize against geomeTRIC's own QCEngine route on QCManyBody's sequential
computer, and a killed optimization that resumes where it was."""

from __future__ import annotations

import copy
import json
import signal
import subprocess

import numpy as np
import pytest

import qcmb_dask
from qcmb_dask.errors import InvalidArgument

from .conftest import mbe_input

ANGSTROM_PER_BOHR = 0.52917721067


#: QCManyBody's cyclic water trimer (its tests' ``mol_h2o_3``, bohr): near its minimum, as optimizations start
CYCLIC_TRIMER_BOHR = [
    ("O", -2.76373224, -1.24377706, -0.15444566),
    ("H", -1.12357791, -2.06227970, -0.05243799),
    ("H", -3.80792362, -2.08705525, 1.06090407),
    ("O", 2.46924614, -1.75437739, -0.17092884),
    ("H", 3.76368260, -2.21425403, 1.00846104),
    ("H", 2.30598330, 0.07098445, -0.03942473),
    ("O", 0.29127930, 3.00875625, 0.20308515),
    ("H", -1.21253048, 1.95820900, 0.10303324),
    ("H", 0.10002049, 4.24958115, -1.10222079),
]


def optimization_input(nwaters: int, bsse: str) -> dict:
    """HF/6-31G, 2-body: the water dimer of the other tests, or QCManyBody's cyclic trimer."""
    data = mbe_input(nwaters, keywords={"bsse_type": bsse, "max_nbody": 2}, specs={"(auto)": ("hf", "6-31g")})
    if nwaters == 3:
        data["molecule"]["geometry"] = [x for atom in CYCLIC_TRIMER_BOHR for x in atom[1:]]
    return data


def geometric_through_qcengine(data: dict, monkeypatch, keywords: dict) -> tuple[list, np.ndarray]:
    """QCEngine's geomeTRIC route (``geometric.run_json``, as QCEngine's ``geometric`` procedure calls it) with
    every gradient from QCEngine's ``qcmanybody`` procedure: QCManyBody's sequential ManyBodyComputer.

    geomeTRIC's QCEngine engine puts ``driver`` at the top of the input it sends, where a ManyBodyInput has none
    (the only reason QCEngine's own procedure cannot take a many-body input): that key is dropped on the way."""
    import geometric.engine
    import geometric.run_json
    import qcengine

    from qcmb_dask.programs import register_shipped

    register_shipped()
    energies = []

    def calc_new(self, coords, dirname):
        schema = copy.deepcopy(self.schema)
        schema.pop("driver")
        schema["molecule"]["geometry"] = coords.tolist()
        result = qcengine.compute(schema, "qcmanybody", raise_error=True)
        self.schema_traj.append(
            {"properties": {"return_energy": result.properties.return_energy}, "molecule": {"geometry": coords}}
        )
        energies.append(result.properties.return_energy)
        return {"energy": result.properties.return_energy, "gradient": np.asarray(result.return_result).ravel()}

    monkeypatch.setattr(geometric.engine.QCEngineAPI, "calc_new", calc_new)
    specification = copy.deepcopy(data["specification"])
    specification["driver"] = "gradient"
    specification["keywords"]["return_total_data"] = True
    for atomic in specification["specification"].values():
        atomic["driver"] = "gradient"
    molecule = {**data["molecule"], "fix_com": True, "fix_orientation": True}
    out = geometric.run_json.geometric_run_json(
        {
            "keywords": {"program": "qcmanybody", **keywords},
            "initial_molecule": molecule,
            "input_specification": {"specification": specification},
        }
    )
    assert out["success"], out.get("error")
    return energies, np.asarray(out["final_molecule"]["geometry"]).reshape(-1, 3)


@pytest.mark.slow
@pytest.mark.parametrize("nwaters", [2, 3])
@pytest.mark.parametrize("bsse", ["nocp", "cp"])
def test_optimize_ends_where_geometric_on_qcmanybody_ends(nwaters, bsse, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # geometric.run_json writes its trajectory (qce_optim.xyz) where it runs
    data = optimization_input(nwaters, bsse)
    # geomeTRIC's default criteria for the dimer; its looser set for the trimer, for the time CI has
    keywords = {"convergence_set": "GAU_LOOSE"} if nwaters == 3 else {}
    reference_energies, reference_final = geometric_through_qcengine(data, monkeypatch, keywords)
    steps = []
    result = qcmb_dask.optimize(
        data, cache=tmp_path / "store", progress=False, callback=lambda *args: steps.append(args), **keywords
    )
    assert abs(len(result.trajectory_results) - len(reference_energies)) <= 1
    assert abs(result.properties.return_energy - reference_energies[-1]) <= 1e-6
    ours = np.asarray(result.final_molecule.geometry) * ANGSTROM_PER_BOHR
    theirs = reference_final * ANGSTROM_PER_BOHR
    assert np.sqrt(np.mean(np.sum((ours - theirs) ** 2, axis=1))) <= 1e-3
    # a line (a callback) per point, and the trajectory holds every point's many-body result
    assert [s[0] for s in steps] == list(range(1, len(result.trajectory_results) + 1))
    assert [p.return_energy for p in result.trajectory_properties] == [s[1] for s in steps]
    assert result.trajectory_results[-1].properties.return_energy == result.properties.return_energy


@pytest.mark.slow
def test_a_killed_optimization_resumes_from_its_last_finished_point(tmp_path):
    from .test_cli import qcmb_dask_command

    data = optimization_input(2, "nocp")
    path = tmp_path / "dimer.json"
    path.write_text(json.dumps(data))
    command = [*qcmb_dask_command(), "optimize", str(path), "--cluster", "sync", "--cache", str(tmp_path / "store")]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "point 2:" in line:
            proc.send_signal(signal.SIGKILL)  # no clean-up of any kind: a node lost, a walltime's kill
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)

    again = subprocess.run(command + ["--out", str(tmp_path / "opt.json")], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    lines = again.stderr.splitlines()
    assert any("resuming: 2 point(s)" in line for line in lines), again.stderr
    points = [line for line in lines if "qcmb_dask: point " in line]
    assert "0 computed, 3 from the store" in points[0] and "0 computed, 3 from the store" in points[1]
    assert "3 computed, 0 from the store" in points[2]

    # the same path as an unbroken run
    unbroken = qcmb_dask.optimize(data, cluster="sync", cache=False, progress=False)
    resumed = json.loads((tmp_path / "opt.json").read_text())
    assert len(resumed["trajectory_results"]) == len(unbroken.trajectory_results)
    assert abs(resumed["properties"]["return_energy"] - unbroken.properties.return_energy) <= 1e-10
    assert resumed["extras"]["qcmb_dask"]["points_resumed"] == 2


def test_an_optimization_out_of_steps_says_so_and_goes_on_with_more(tmp_path):
    data = optimization_input(2, "nocp")
    with pytest.raises(qcmb_dask.OptimizationNotConverged, match="did not converge in 4 points.*larger maxiter") as out:
        qcmb_dask.optimize(data, cluster="sync", cache=tmp_path, progress=False, maxiter=3)  # the start and 3 steps
    result = qcmb_dask.optimize(data, cluster="sync", cache=tmp_path, progress=False)
    assert result.extras["qcmb_dask"]["points_resumed"] == out.value.points == 4
    assert [p["computed"] for p in result.extras["qcmb_dask"]["points"][:5]] == [0, 0, 0, 0, 3]


def test_bad_optimizer_arguments_are_refused_before_anything_runs(tmp_path):
    data = optimization_input(2, "nocp")
    with pytest.raises(InvalidArgument, match="does not know the keyword"):
        qcmb_dask.optimize(data, cache=tmp_path, convergence_sett="GAU")
    with pytest.raises(InvalidArgument, match="optking is not supported"):
        qcmb_dask.optimize(data, cache=tmp_path, optimizer="optking")
    with pytest.raises(InvalidArgument, match="coordsys"):
        qcmb_dask.optimize(data, cache=tmp_path, coordsys="polar")
    assert not list(tmp_path.iterdir())  # nothing was computed or kept


def test_a_journal_that_cannot_be_written_warns_and_the_optimization_goes_on(tmp_path):
    from qcmb_dask.errors import StoreWarning

    (tmp_path / "optimizations").write_text("a file where the journal's folder would go")
    with pytest.warns(StoreWarning, match="cannot record this optimization's points"):
        result = qcmb_dask.optimize(optimization_input(2, "nocp"), cluster="sync", cache=tmp_path, progress=False)
    assert result.properties.optimization_iterations > 3


def test_an_energy_screened_optimization_keeps_the_kmers_of_its_first_point(tmp_path, caplog):
    """The cyclic trimer, 3-body nocp, with a 3-body threshold that drops the trimer: every point is the 2-body
    expansion, so the optimization ends where the 2-body one does (and says it froze the k-mers)."""
    data = optimization_input(3, "nocp")
    data["specification"]["keywords"]["max_nbody"] = 3
    with caplog.at_level("INFO", logger="qcmb_dask"):
        screened = qcmb_dask.optimize(
            data, cluster="sync", cache=tmp_path, progress=False, screening={"energy": {3: 1.0}, "measure": "max"}
        )
    assert "chose 3 2-mers, 0 3-mers at the first point; the optimization keeps these k-mers" in caplog.text
    two_body = qcmb_dask.optimize(optimization_input(3, "nocp"), cluster="sync", cache=tmp_path, progress=False)
    assert abs(screened.properties.return_energy - two_body.properties.return_energy) <= 1e-9
    assert len(screened.trajectory_results) == len(two_body.trajectory_results)
