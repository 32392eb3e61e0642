"""Energy-screened runs end to end (PySCF, tblite): thresholds of zero give QCManyBody's answer; a screened run keeps
exactly what the rule keeps from the full expansion's energies and its energy is the sum of the kept increments;
reruns compute nothing new, tighter ones only what they newly keep; the cheap measure, the order chosen by the
results, and what is refused before anything runs."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

import qcmb_dask
from qcmb_dask.errors import FragmentsFailed, InvalidInput
from qcmb_dask.planning.energy_screening import OWN, EnergyScreen, run_through

from .conftest import assert_same_result, entries, mbe_input, qcmanybody_reference, water_grid

ZERO = {"energy": {3: 0.0}}


def grid_input(nwaters: int, max_nbody: int, bsse_type: str = "nocp", driver: str = "energy", **keywords) -> dict:
    """``nwaters`` waters 3.0 A apart on a grid, HF/STO-3G: near ones interact, far ones hardly."""
    data = mbe_input(driver=driver, keywords={"bsse_type": bsse_type, "max_nbody": max_nbody, **keywords})
    data["molecule"] = water_grid(nwaters, spacing=3.0)
    return data


def energies_of(result) -> dict[tuple[int, ...], float]:
    """k-mer -> its energy in its own basis, from a full nocp result's component properties."""
    found = {}
    for label, props in result.cluster_properties.items():
        _, real, basis = json.loads(label)
        if real == basis:
            found[tuple(real)] = props.return_energy
    return found


@pytest.mark.parametrize(
    "bsse_type, driver", [("nocp", "energy"), ("vmfc", "energy"), ("nocp", "gradient")], ids=lambda v: str(v)
)
def test_thresholds_of_zero_give_qcmanybodys_answer(local_client, tmp_path, bsse_type, driver):
    data = mbe_input(driver=driver, keywords={"bsse_type": bsse_type})
    ours = qcmb_dask.compute(data, cluster=local_client, cache=tmp_path, screening=ZERO, progress=False)
    assert_same_result(ours, qcmanybody_reference(data))
    report = ours.extras["qcmb_dask"]["screening"]["energy"]
    assert report["kept"] == {"2": 3, "3": 1} and report["dropped"] == {"2": 0, "3": 0}


@pytest.mark.parametrize("measure, threshold", [("max", 4e-3), ("min", 4e-4), ("sum", 6e-3)])
def test_a_screened_run_keeps_what_the_rule_keeps_and_sums_the_kept_increments(tmp_path, measure, threshold):
    data = grid_input(6, 3, return_total_data=True)
    full = qcmb_dask.compute(data, cluster="sync", cache=tmp_path, progress=False)
    energy = energies_of(full)
    ours = qcmb_dask.compute(
        data, cluster="sync", cache=tmp_path, screening={"energy": {3: threshold}, "measure": measure}, progress=False
    )
    rule = run_through(EnergyScreen(6, 3, {3: threshold}, measure=measure), energy.__getitem__)
    report = ours.extras["qcmb_dask"]["screening"]["energy"]
    assert report["decisions"]["computed"] == 0 and ours.extras["qcmb_dask"]["computed"] == 0  # all in the store
    assert report["kept"]["3"] == len(rule.kept[3]) and 0 < len(rule.kept[3]) < 20
    dropped = {tuple(k): v for k, v in zip(report["dropped_kmers"]["3"], report["dropped_measures"]["3"])}
    assert dropped == pytest.approx(rule.dropped, abs=1e-12)
    assert all(value < threshold for value in dropped.values())
    assert ours.return_result == pytest.approx(rule.total(), abs=1e-9)  # the sum of the kept increments
    assert ours.return_result != pytest.approx(full.return_result, abs=1e-7)  # and something was dropped


def test_a_rerun_computes_nothing_and_a_tighter_one_only_what_it_newly_keeps(tmp_path):
    data = grid_input(5, 3)
    loose = {"energy": {3: 1e-3}, "measure": "max"}
    first = qcmb_dask.compute(data, cluster="sync", cache=tmp_path, screening=loose, progress=False)
    first_report = first.extras["qcmb_dask"]["screening"]["energy"]
    assert first_report["decisions"]["computed"] == 5 + 10 + first_report["kept"]["3"]
    again = qcmb_dask.compute(data, cluster="sync", cache=tmp_path, screening=loose, progress=False)
    report = again.extras["qcmb_dask"]["screening"]["energy"]
    assert report["decisions"]["computed"] == 0 and again.extras["qcmb_dask"]["computed"] == 0
    assert again.return_result == first.return_result and report["dropped_kmers"] == first_report["dropped_kmers"]
    tighter = qcmb_dask.compute(
        data, cluster="sync", cache=tmp_path, screening={"energy": {3: 1e-6}, "measure": "max"}, progress=False
    )
    newly = tighter.extras["qcmb_dask"]["screening"]["energy"]
    assert newly["kept"]["3"] > first_report["kept"]["3"]
    assert newly["decisions"]["computed"] == newly["kept"]["3"] - first_report["kept"]["3"]


def test_vmfc_decides_by_its_own_increments_and_equals_the_sum_of_the_kept_ones(tmp_path):
    data = grid_input(5, 3, "vmfc")
    full = qcmb_dask.compute(data, cluster="sync", cache=tmp_path, progress=False)
    ours = qcmb_dask.compute(
        data, cluster="sync", cache=tmp_path, screening={"energy": {3: 4e-3}, "measure": "max"}, progress=False
    )
    report = ours.extras["qcmb_dask"]["screening"]["energy"]
    assert ours.extras["qcmb_dask"]["computed"] == 0 and report["kept"]["3"] == 6
    three_body = full.properties.vmfc_corrected_interaction_energy_through_3_body
    two_body = full.properties.vmfc_corrected_interaction_energy_through_2_body
    kept_three = ours.properties.vmfc_corrected_interaction_energy_through_3_body - two_body
    assert ours.properties.vmfc_corrected_interaction_energy_through_2_body == pytest.approx(two_body, abs=1e-10)
    assert report["level_totals"]["3"] == pytest.approx(kept_three, abs=1e-10)
    assert abs(kept_three - (three_body - two_body)) < sum(report["dropped_measures"]["3"]) * 3


def test_the_cheap_method_decides_and_the_expensive_one_runs_only_what_it_keeps(tmp_path):
    data = grid_input(5, 3)
    thresholds = {2: 8e-4, 3: 2e-5}
    ours = qcmb_dask.compute(
        data, cluster="sync", cache=tmp_path, screening={"energy": thresholds, "measure": "gfn2-xtb"}, progress=False
    )
    report = ours.extras["qcmb_dask"]["screening"]["energy"]
    assert report["measure"] == "gfn2-xtb" and report["increment"].startswith("cheap")
    kept2, kept3 = report["kept"]["2"], report["kept"]["3"]
    assert 0 < kept2 < 10 and report["dropped"]["2"] == 10 - kept2
    # the cheap method ran every candidate; HF only the kept k-mers (nothing else, nothing twice)
    assert report["decisions"]["computed"] == 5 + 10 + kept3 + report["dropped"]["3"]
    assert ours.extras["qcmb_dask"]["computed"] == 5 + kept2 + kept3
    for order, values in report["dropped_measures"].items():
        assert all(value < thresholds[int(order)] for value in values)
    # the cheap decisions are tblite's own increments, made again here from its energies
    from qcmb_dask.planning.energy_screening import full_increments

    cheap = full_increments(5, 3, lambda kmer: _gfn2_energy(data, kmer))
    screen = run_through(EnergyScreen(5, 3, thresholds, measure=OWN), lambda kmer: _gfn2_energy(data, kmer))
    assert {k: len(v) for k, v in screen.kept.items() if k > 1} == {2: kept2, 3: kept3}
    for kmer, value in screen.dropped.items():
        assert value == pytest.approx(abs(cheap[kmer]), abs=1e-12)


def _gfn2_energy(data: dict, kmer: tuple[int, ...]) -> float:
    """GFN2-xTB through tblite's own API, with the harness's settings (the molecule's geometry is in Bohr)."""
    from .test_tblite_harness import direct

    molecule = data["molecule"]
    atoms = [atom for fragment in kmer for atom in molecule["fragments"][fragment - 1]]
    angstrom = np.asarray(molecule["geometry"]).reshape(-1, 3)[atoms] * 0.52917721067
    return float(direct("GFN2-xTB", [molecule["symbols"][a] for a in atoms], angstrom))


def test_the_order_is_chosen_by_the_results_and_the_result_says_where_and_why(tmp_path):
    data = grid_input(5, 4, return_total_data=True)
    auto = {"max_nbody": "auto", "tolerance": 1e-2, "energy": {3: 0.0, 4: 0.0}}  # thresholds past where it stops
    stops = qcmb_dask.compute(data, cluster="sync", cache=tmp_path, screening=auto, progress=False)
    report = stops.extras["qcmb_dask"]["screening"]["energy"]
    assert report["stopped"]["order"] == 3 and "below the tolerance" in report["stopped"]["reason"]
    assert report["not_reached"] == {"4": 5} and report["kept"]["4"] == 0
    assert stops.properties.nocp_corrected_total_energy_through_3_body is not None
    assert stops.properties.nocp_corrected_total_energy_through_4_body is None  # the levels end where it stopped
    full = qcmb_dask.compute(
        data, cluster="sync", cache=tmp_path, screening={"max_nbody": "auto", "tolerance": 1e-12}, progress=False
    )
    report = full.extras["qcmb_dask"]["screening"]["energy"]
    assert report["stopped"] == {"order": 4, "reason": "reached the input's max_nbody (4)"}
    assert full.return_result == pytest.approx(qcmb_dask.compute(data, cluster="sync", progress=False).return_result)


@pytest.mark.parametrize(
    "keywords, driver, screening, says",
    [
        ({"bsse_type": "cp"}, "energy", ZERO, "Use bsse_type ['vmfc']"),
        ({"bsse_type": "nocp"}, "hessian", ZERO, "for driver energy or gradient, not hessian"),
        ({"bsse_type": "nocp", "max_nbody": 2}, "energy", ZERO, "above the input's max_nbody (2)"),
        ({"bsse_type": "nocp"}, "energy", {"energy": {3: -1.0}}, "a number of at least 0"),
        ({"bsse_type": "nocp"}, "energy", {"energy": {2: 1e-4}}, "a 2-body energy threshold needs"),
        ({"bsse_type": "vmfc"}, "energy", {"energy": {3: 1e-5}, "measure": "gfn7"}, "measure='gfn7'"),
    ],
)
def test_what_energy_screening_cannot_do_is_refused_before_anything_runs(tmp_path, keywords, driver, screening, says):
    data = mbe_input(driver=driver, keywords=keywords)
    with pytest.raises(InvalidInput, match=__import__("re").escape(says)):
        qcmb_dask.compute(data, cluster="sync", cache=tmp_path / "store", screening=screening, progress=False)
    assert not entries(tmp_path / "store")


def test_energy_screening_without_a_store_is_refused(tmp_path):
    with pytest.raises(InvalidInput, match="with the store on"):
        qcmb_dask.compute(mbe_input(keywords={"bsse_type": "nocp"}), cluster="sync", cache=False, screening=ZERO)


def test_the_settings_are_read_from_the_inputs_extras_and_shown_in_the_plan():
    data = mbe_input(keywords={"bsse_type": "nocp"})
    data["specification"]["extras"] = {"qcmb_dask": {"screening": {"energy": {3: 1e-5}, "distance": {2: 9}}}}
    shown = str(qcmb_dask.plan(data))
    assert "Screened by energy (measure max): thresholds 3-body 1e-05 Eh" in shown
    assert "Candidates limited by distance (closest atoms of two fragments): 2-body 9 A" in shown


def test_a_calculation_that_fails_while_deciding_stops_the_run_with_the_rest_stored(tmp_path):
    data = mbe_input(keywords={"bsse_type": "nocp"}, program="dimers-fail")
    from qcengine import register_program
    from qcengine.programs.base import programs

    from .fake_programs import DimersFailHarness

    if "dimers-fail" not in programs:
        register_program(DimersFailHarness())
    with pytest.raises(FragmentsFailed) as failed:
        qcmb_dask.compute(data, cluster="sync", cache=tmp_path, screening=ZERO, progress=False)
    assert len(failed.value.failures) == 3 and "stored in" in str(failed.value)
    assert len(entries(tmp_path)) == 3  # the monomers: a rerun starts from them


@pytest.mark.slow
def test_a_distance_limited_energy_screened_gradient_on_a_cluster_equals_the_in_process_run(local_client, tmp_path):
    data = grid_input(6, 3, driver="gradient", return_total_data=True)
    screening = {"energy": {3: 4e-3}, "distance": {2: 3.6, 3: 3.6}, "measure": "max"}
    here = qcmb_dask.compute(data, cluster="sync", cache=tmp_path / "a", screening=screening, progress=False)
    there = qcmb_dask.compute(data, cluster=local_client, cache=tmp_path / "b", screening=screening, progress=False)
    assert there.return_result == pytest.approx(here.return_result, abs=1e-9)
    ours, theirs = (r.extras["qcmb_dask"]["screening"]["energy"] for r in (here, there))
    assert ours["kept"] == theirs["kept"] == {"2": 11, "3": 4}
    assert sorted(ours["dropped_kmers"]["3"]) == sorted(theirs["dropped_kmers"]["3"])
    distances = qcmb_dask.plan(data, screening=screening).screening.distances
    candidates = [k for k in itertools.combinations(range(1, 7), 3) if all(distances[a - 1, b - 1] <= 3.6 for a, b in
                  itertools.combinations(k, 2))]  # fmt: skip
    assert len(candidates) == 8 and ours["dropped"]["3"] == 4  # the others were never candidates
    assert np.asarray(there.return_result).shape == (18, 3)


def test_the_live_page_shows_candidates_computed_and_dropped_per_order(local_client, tmp_path):
    from qcmb_dask.diagnostics import page

    data = grid_input(5, 3)
    result = qcmb_dask.compute(
        data, cluster=local_client, cache=tmp_path, screening={"energy": {3: 4e-3}, "measure": "max"}, progress=False
    )
    report = result.extras["qcmb_dask"]["screening"]["energy"]
    runs = local_client.run_on_scheduler(lambda dask_scheduler: page.snapshot(dask_scheduler)["runs"])
    screening_run = next(run["run"] for run in runs if run["run"].startswith("screening-"))
    shown = local_client.run_on_scheduler(lambda dask_scheduler: page.snapshot(dask_scheduler, screening_run))
    three = shown["screening"]["orders"]["3"]
    assert three == {"candidates": 10, "computed": report["kept"]["3"], "dropped": report["dropped"]["3"], "running": 0}
    assert "3-body 10 candidates" in shown["screening"]["line"]
    assert {level["nbody"]: (level["total"], level["done"]) for level in shown["levels"]} == {
        1: (5, 5),
        2: (10, 10),
        3: (report["kept"]["3"], report["kept"]["3"]),
    }


def test_on_the_embedded_cluster_whose_client_is_not_the_default_one(tmp_path):
    """compute()'s own LocalCluster: its client is not Dask's default one, which the decisions must not need."""
    data = grid_input(4, 3)
    screening = {"energy": {3: 4e-3}, "measure": "max"}
    embedded = qcmb_dask.compute(data, cache=tmp_path / "a", screening=screening, progress=False)
    here = qcmb_dask.compute(data, cluster="sync", cache=tmp_path / "b", screening=screening, progress=False)
    assert embedded.return_result == pytest.approx(here.return_result, abs=1e-10)
    assert embedded.extras["qcmb_dask"]["cluster"]["kind"] != "sync"


def test_the_command_line_runs_an_energy_screened_expansion_and_refuses_a_bad_one(tmp_path):
    from click.testing import CliRunner

    from qcmb_dask.cli import main

    path = tmp_path / "five.json"
    path.write_text(json.dumps(grid_input(5, 4)))
    common = ["run", str(path), "--cluster", "sync", "--cache", str(tmp_path / "store"), "--quiet"]
    out = CliRunner().invoke(
        main, [*common, "--energy-screening", "3=4e-3", "--measure", "max", "--order-tolerance", "1e-2",
               "--screening", "2=4,3=4", "--out", str(tmp_path / "result.json")],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    report = json.loads((tmp_path / "result.json").read_text())["extras"]["qcmb_dask"]["screening"]["energy"]
    assert (
        report["thresholds"] == {"3": 4e-3}
        and report["measure"] == "max"
        and report["distance"] == {"2": 4.0, "3": 4.0}
    )
    assert report["tolerance"] == 1e-2 and report["stopped"]["order"] == 3
    refused = CliRunner().invoke(main, [*common, "--energy-screening", "3=-1"])
    assert refused.exit_code == 2 and "must be a number of at least 0" in refused.output
    refused = CliRunner().invoke(main, [*common, "--measure", "gfn2-xtb"])
    assert refused.exit_code == 2 and "give energy thresholds" in refused.output


@pytest.mark.slow
def test_an_interrupted_screened_run_resumes_from_the_store_and_gives_the_same_answer(tmp_path):
    """Ctrl-C while the trimers are being decided: exit 130, every finished calculation stored; the same command
    computes only what is missing and gives the uninterrupted run's answer."""
    import signal
    import subprocess

    from .test_cli import qcmb_dask_command

    path = tmp_path / "six.json"
    path.write_text(json.dumps(grid_input(6, 3)))
    settings = ["--energy-screening", "3=1e-4", "--measure", "max", "--cluster", "sync"]
    command = [*qcmb_dask_command(), "run", str(path), *settings, "--cache", str(tmp_path / "store")]
    # SIGINT at its default, as a terminal starts a command (a background shell may have set it to "ignore")
    default_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)  # noqa: E731
    proc = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "2-body decided" in line:
            proc.send_signal(signal.SIGINT)
            break
    proc.communicate(timeout=120)
    assert proc.returncode == 130, "".join(seen)
    stored = len(entries(tmp_path / "store"))
    assert stored >= 6 + 15  # the monomers and dimers at least

    again = subprocess.run(
        [*command, "--out", str(tmp_path / "resumed.json")], capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr
    resumed = json.loads((tmp_path / "resumed.json").read_text())
    decided = resumed["extras"]["qcmb_dask"]["screening"]["energy"]["decisions"]
    assert decided["from_store"] == stored and decided["computed"] == 6 + 15 + resumed["extras"]["qcmb_dask"][
        "screening"]["energy"]["kept"]["3"] - stored  # fmt: skip
    whole = qcmb_dask.compute(
        grid_input(6, 3), cluster="sync", cache=tmp_path / "other", progress=False,
        screening={"energy": {3: 1e-4}, "measure": "max"},
    )  # fmt: skip
    assert resumed["return_result"] == pytest.approx(whole.return_result, abs=1e-10)
