"""Distance-screened expansions: which k-mers are kept, the assembly of the kept increments, QCManyBody's answer
when nothing is dropped, gradients of the screened energy, the store, the plan and the command line."""

import itertools

import numpy as np
import pytest
from click.testing import CliRunner

import qcmb_dask
from qcmb_dask.errors import InvalidInput
from qcmb_dask.planning.inputs import normalize
from qcmb_dask.planning.plan import make_plan
from qcmb_dask.planning.screening import parse_cutoffs, screen
from qcmb_dask.qcmanybody_adapter import qcmb_computer
from qcmb_dask.worker.screened import complete

from .conftest import (
    BOHR_PER_ANGSTROM,
    WATER_TRIMER_ANGSTROM,
    assert_same_result,
    entries,
    mbe_input,
    qcmanybody_reference,
    water_grid,
)

EVERYTHING = {2: 100.0, 3: 100.0}  # Angstrom: larger than any of these clusters


# -- which k-mers are kept (pure) ------------------------------------------------------------------------------------
def test_a_kmer_is_kept_when_its_pairs_are_near_and_its_subsets_kept():
    # four fragments on a line, 3 A apart: 1-2, 2-3, 3-4 at 3 A; 1-3, 2-4 at 6 A; 1-4 at 9 A
    d = np.abs(np.subtract.outer(np.arange(4), np.arange(4))) * 3.0
    screened = screen({2: 6.5, 3: 6.5}, d, 4)
    assert screened.kept[2] == [(1, 2), (1, 3), (2, 3), (2, 4), (3, 4)]  # not 1-4 (9 A)
    assert screened.kept[3] == [(1, 2, 3), (2, 3, 4)]  # 1-2-4 has 1-4 dropped
    assert screened.kept[4] == []  # its subset 1-2-4 is dropped, though order 4 has no cutoff
    assert screened.counts() == {1: (4, 4), 2: (5, 6), 3: (2, 4), 4: (0, 1)}
    # a 3-body cutoff tighter than the pairs: trimers need every pair within 3.5 A
    assert screen({3: 3.5}, d, 3).kept[3] == []
    assert screen({2: 3.5}, d, 3).kept[3] == []  # no 3-body cutoff, but 1-3 is dropped


@pytest.mark.parametrize("seed", range(20))
def test_the_kept_kmers_are_exactly_those_of_the_rule_whatever_the_numbering(seed):
    """Every pair within the k-body cutoff and every (k-1)-mer kept, by brute force, on random clusters with a
    3-body cutoff shorter than the 2-body one (a trimer grown from a kept dimer used to keep the dimer's own pair
    unchecked against the shorter cutoff: which trimers were kept depended on the numbering)."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 10, size=(9, 3))
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    cutoffs = {2: 6.0, 3: 4.0, 4: 5.0}
    kept = {1: {(i,) for i in range(1, 10)}}
    for order in (2, 3, 4):
        kept[order] = {
            kmer
            for kmer in itertools.combinations(range(1, 10), order)
            if all(d[a - 1, b - 1] <= cutoffs[order] for a, b in itertools.combinations(kmer, 2))
            and all(sub in kept[order - 1] for sub in itertools.combinations(kmer, order - 1))
        }
    screened = screen(cutoffs, d, 4)
    assert {order: set(kmers) for order, kmers in screened.kept.items()} == kept


def test_cutoffs_are_read_from_the_call_a_string_and_the_input():
    assert parse_cutoffs("2=9, 3=6") == {2: 9.0, 3: 6.0}
    assert parse_cutoffs({"3": 6, 2: "9.5"}) == {2: 9.5, 3: 6.0}
    assert parse_cutoffs(None) is None and parse_cutoffs({}) is None
    for bad, words in (("2:9", "ORDER=ANGSTROM"), ({1: 5}, "2 fragments or more"), ({2: -1}, "positive")):
        with pytest.raises(InvalidInput, match=words):
            parse_cutoffs(bad)
    data = mbe_input(3, keywords={"bsse_type": "nocp"})
    data["specification"]["extras"] = {"qcmb_dask": {"screening": {"2": 2.0}}}
    assert len(make_plan(data)) == 4  # 3 monomers and the one dimer whose waters are within 2 A


@pytest.mark.parametrize(
    "keywords, words",
    [
        ({"bsse_type": "cp"}, "defined for nocp and vmfc"),
        ({"bsse_type": ["nocp", "cp"]}, r"bsse_type \['cp'\] is not"),
        ({"bsse_type": "nocp", "levels": {1: "a", 2: "b"}}, "one model chemistry"),
        ({"bsse_type": "nocp", "levels": {1: "a", 2: "b", "supersystem": "c"}}, "supersystem"),
    ],
)
def test_what_screening_does_not_define_is_refused_before_anything_runs(keywords, words):
    specs = {"a": ("hf", "sto-3g"), "b": ("hf", "6-31g"), "c": ("hf", "3-21g")} if "levels" in keywords else None
    with pytest.raises(InvalidInput, match=words):
        make_plan(mbe_input(3, keywords=keywords, specs=specs), screening={2: 5.0})


# -- the assembly (pure: made-up fragment results, QCManyBody's analysis) ---------------------------------------------
@pytest.mark.parametrize("bsse_type", ["nocp", "vmfc"])
def test_the_completed_results_give_the_sum_of_the_kept_increments(bsse_type):
    """Four waters, 3-body, made-up energies and gradients: QCManyBody's analysis of the completed results is the
    sum of the kept k-mers' increments, each computed here by inclusion-exclusion from its own calculations."""
    data = mbe_input(3, driver="gradient", keywords={"bsse_type": bsse_type, "return_total_data": True})
    data["molecule"] = _four_waters()
    plan = make_plan(data, screening={2: 3.0})
    kept = {k: set(v) for k, v in plan.screening.kept.items()}
    assert kept[2] == {(1, 2), (1, 3), (2, 3), (3, 4)} and kept[3] == {(1, 2, 3)}
    rng = np.random.default_rng(3)
    results = {}
    for task in plan:
        results[task.label] = {"energy": rng.normal(), "gradient": rng.normal(size=(3 * len(task.basis), 3))}
    core = qcmb_computer(normalize(data)).qcmb_core
    completed, increments = complete(core, results)
    analyzed = core.analyze(completed)

    def value(real, basis, prop):
        from qcmanybody.utils import labeler

        props = results[labeler("(auto)", real, basis)]
        return props[prop] if prop == "energy" else core.resize_gradient(props[prop], basis)

    def increment(kmer, prop):
        if bsse_type == "vmfc":
            return sum(
                (-1) ** (len(kmer) - size) * value(real, kmer, prop)
                for size in range(1, len(kmer) + 1)
                for real in itertools.combinations(kmer, size)
            )
        return sum(
            (-1) ** (len(kmer) - size) * value(sub, sub, prop)
            for size in range(1, len(kmer) + 1)
            for sub in itertools.combinations(kmer, size)
        )

    for prop in ("energy", "gradient"):
        expected = sum(increment(kmer, prop) for order in (1, 2, 3) for kmer in kept[order])
        body = analyzed[f"{prop}_body_dict"]  # QCManyBody keys energies "3nocp", other properties by treatment
        through_3 = body[f"3{bsse_type}"] if prop == "energy" else body[bsse_type][3]
        np.testing.assert_allclose(through_3, expected, atol=1e-10)
    for kmer in kept[2] | kept[3]:
        assert increments[kmer] == pytest.approx(increment(kmer, "energy"), abs=1e-12)


def _four_waters() -> dict:
    """The trimer and a copy of its first water 3.2 A above it (Bohr): waters 1-4 and 2-4 are the farthest pairs."""
    atoms = list(WATER_TRIMER_ANGSTROM) + [(s, x, y, z + 3.2) for s, x, y, z in WATER_TRIMER_ANGSTROM[:3]]
    return {
        "symbols": [a[0] for a in atoms],
        "geometry": [x * BOHR_PER_ANGSTROM for a in atoms for x in a[1:]],
        "fragments": [[3 * i, 3 * i + 1, 3 * i + 2] for i in range(4)],
    }


# -- against QCManyBody, with cutoffs larger than the cluster ----------------------------------------------------------
def _mixed_cluster() -> dict:
    """Water, ammonia and hydrogen fluoride (Angstrom), a cluster of three different molecules."""
    atoms = [
        ("O", 0.000, 0.000, 0.000), ("H", 0.757, 0.586, 0.000), ("H", -0.757, 0.586, 0.000),
        ("N", 0.000, 3.000, 0.000), ("H", 0.940, 3.330, 0.000),
        ("H", -0.470, 3.330, 0.814), ("H", -0.470, 3.330, -0.814),
        ("F", 2.700, -0.500, 0.000), ("H", 1.800, -0.300, 0.000),
    ]  # fmt: skip
    return {
        "symbols": [a[0] for a in atoms],
        "geometry": [x * BOHR_PER_ANGSTROM for a in atoms for x in a[1:]],
        "fragments": [[0, 1, 2], [3, 4, 5, 6], [7, 8]],
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    "system, bsse_type, driver, max_nbody",
    [
        ("water", "nocp", "energy", 3),
        ("water", "vmfc", "energy", 3),
        ("water", "nocp", "gradient", 3),
        ("water", "vmfc", "gradient", 3),
        ("water", "vmfc", "gradient", 2),
        ("mixed", "nocp", "gradient", 3),
        ("mixed", "vmfc", "energy", 2),
    ],
)
def test_cutoffs_beyond_the_cluster_give_qcmanybodys_answer(local_client, system, bsse_type, driver, max_nbody):
    data = mbe_input(3, driver=driver, keywords={"bsse_type": bsse_type, "max_nbody": max_nbody})
    if system == "mixed":
        data["molecule"] = _mixed_cluster()
    ours = qcmb_dask.compute(data, cluster=local_client, screening=EVERYTHING, progress=False)
    assert_same_result(ours, qcmanybody_reference(data))  # 1e-9 Eh energies, 1e-8 gradients
    report = ours.extras["qcmb_dask"]["screening"]
    assert report["cutoffs"] == {"2": 100.0, "3": 100.0} and not any(report["dropped"].values())


# -- a screened expansion -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_screened_gradient_is_the_derivative_of_the_screened_energy(local_client):
    """The nocp trimer with one dimer and the trimer dropped: central differences of the screened energy (the
    kept k-mers the same at every displaced geometry) against the screened gradient, to 1e-6 Eh/bohr."""
    cutoffs = {2: 2.0}
    nocp_total = {"bsse_type": "nocp", "return_total_data": True}  # the energy whose derivative the gradient is
    base = mbe_input(3, driver="gradient", keywords=nocp_total)
    gradient = qcmb_dask.compute(base, cluster=local_client, screening=cutoffs, progress=False)
    kept = make_plan(base, screening=cutoffs).screening.kept
    assert kept[2] == [(1, 2)] and kept[3] == []
    h = 1e-3
    geometry = np.array(base["molecule"]["geometry"])
    displaced = []
    coordinates = [0, 4, 11, 20, 25]  # coordinates of atoms of both waters of the kept dimer, and of the third
    for index in coordinates:
        for step in (+h, -h):
            data = mbe_input(3, driver="energy", keywords=nocp_total)
            moved = geometry.copy()
            moved[index] += step
            data["molecule"]["geometry"] = moved.tolist()
            assert make_plan(data, screening=cutoffs).screening.kept == kept
            displaced.append(data)
    energies = [r.return_result for r in qcmb_dask.compute_many(displaced, cluster=local_client, screening=cutoffs)]
    analytic = np.asarray(gradient.return_result).ravel()
    for n, index in enumerate(coordinates):
        numeric = (energies[2 * n] - energies[2 * n + 1]) / (2 * h)
        assert numeric == pytest.approx(analytic[index], abs=1e-6), index


@pytest.mark.slow
def test_a_tighter_run_reads_a_looser_ones_calculations_from_the_store(local_client, tmp_path):
    data = mbe_input(3, keywords={"bsse_type": "nocp", "return_total_data": True})
    loose = qcmb_dask.compute(data, cluster=local_client, screening={2: 5.0}, cache=tmp_path, progress=False)
    tight = qcmb_dask.compute(data, cluster=local_client, screening={2: 2.0}, cache=tmp_path, progress=False)
    assert loose.extras["qcmb_dask"]["computed"] == 7 and len(entries(tmp_path)) == 7
    assert tight.extras["qcmb_dask"]["computed"] == 0 and tight.extras["qcmb_dask"]["from_store"] == 4
    assert qcmb_dask.progress_in_store(data, cache=tmp_path, screening={2: 2.0}) == {1: (3, 3), 2: (1, 1)}
    report = tight.extras["qcmb_dask"]["screening"]
    assert report["kept"] == {"1": 3, "2": 1, "3": 0} and report["dropped"] == {"1": 0, "2": 2, "3": 1}
    # the screened energy: the three monomers and the kept dimer's increment, E(12) + E(3), from QCManyBody's run
    full = qcmanybody_reference(mbe_input(3, keywords={"bsse_type": "nocp", "max_nbody": 2, "return_total_data": True}))
    components = getattr(full, "cluster_properties", None) or full.component_properties
    e12, e3 = (components[f'["(auto)", {k}, {k}]'].return_energy for k in ("[1, 2]", "[3]"))
    assert tight.return_result == pytest.approx(e12 + e3, abs=1e-9)
    assert tight.return_result != pytest.approx(full.return_result, abs=1e-4)  # the dropped dimers mattered


def test_the_plan_and_the_command_line_show_what_is_dropped(tmp_path):
    import json

    from qcmb_dask.cli import main

    data = mbe_input(3, keywords={"bsse_type": "nocp"})
    text = str(qcmb_dask.plan(data, screening={2: 2.0}))
    assert "Screened by distance (closest atoms of two fragments): 2-body 2 A" in text
    assert "2-mers kept:         1 of 3    66.7 % dropped" in text and "3-mers kept:         0 of 1" in text
    path = tmp_path / "trimer.json"
    path.write_text(json.dumps(data))
    out = CliRunner().invoke(main, ["plan", str(path), "--screening", "2=2"])
    assert out.exit_code == 0 and "2-mers kept:         1 of 3" in out.output, out.output
    out = CliRunner().invoke(main, ["plan", str(path), "--screening", "2:2"])
    assert out.exit_code == 2 and "ORDER=ANGSTROM" in out.output


def test_no_estimate_where_the_kept_increments_do_not_decay():
    """A fit that grows with distance, summed over the far dropped k-mers, gave 2.6e9 kcal/mol for (H2O)64."""
    from qcmb_dask.worker.screened import report

    points = np.arange(12, dtype=float)[:, None] * np.array([[3.0, 0.0, 0.0]])
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    kept = [kmer for kmer in itertools.combinations(range(1, 13), 2) if d[kmer[0] - 1, kmer[1] - 1] <= 15.0]
    screening = {"cutoffs": {"2": 15.0}, "kept_kmers": {2: kept}, "matrix": d}
    growing = {kmer: 1e-6 * d[kmer[0] - 1, kmer[1] - 1] ** 2 for kmer in kept}
    estimate = report(screening, growing)["dropped_energy_estimate"]["2"]
    assert estimate["hartree"] is None and "do not decay" in estimate["why"]
    decaying = {kmer: -1e-3 * d[kmer[0] - 1, kmer[1] - 1] ** -3 for kmer in kept}
    assert report(screening, decaying)["dropped_energy_estimate"]["2"]["hartree"] < 0


@pytest.mark.parametrize(
    ("program", "bsse_type", "driver", "max_nbody"),
    [
        ("toy", "nocp", "energy", 3),
        ("toy", "nocp", "gradient", 4),
        ("toy", "vmfc", "energy", 3),
        ("toy", "vmfc", "gradient", 3),
        ("pyscf", "nocp", "energy", 3),
    ],
)
def test_the_tree_of_sums_gives_the_completed_analysis(local_client, program, bsse_type, driver, max_nbody):
    """A screened expansion that drops k-mers, summed as a tree (the default) and analyzed whole by QCManyBody on
    the completed results (cluster_results "all"): the same properties, text and estimate of what was dropped.
    The toy program's closed-form energies are fast and pairwise additive: its 3- and 4-body increments are zero
    but for rounding, so its estimates are compared for 2-body only; PySCF's for every order."""
    from .fake_programs import ToyHarness

    data = mbe_input(2, driver=driver, keywords={"bsse_type": bsse_type, "max_nbody": max_nbody}, program=program)
    data["molecule"] = water_grid(8, spacing=2.9)
    cutoffs = {2: 3.9, 3: 3.4, 4: 3.4} if max_nbody == 4 else {2: 3.9, 3: 3.4}  # 24 of 28, 16 of 56, 4 of 70
    harness = [ToyHarness()] if program == "toy" else []
    tree = qcmb_dask.compute(data, local_client, harnesses=harness, screening=cutoffs, progress=False)
    whole_data = {**data, "specification": {**data["specification"], "protocols": {"cluster_results": "all"}}}
    whole = qcmb_dask.compute(whole_data, local_client, harnesses=harness, screening=cutoffs, progress=False)
    dropped = tree.extras["qcmb_dask"]["screening"]["dropped"]
    assert dropped["2"] > 0 and dropped["3"] > 0
    assert_same_result(tree, whole.model_copy(update={"cluster_results": {}}))
    ours, theirs = tree.extras["qcmb_dask"]["screening"], whole.extras["qcmb_dask"]["screening"]
    estimates, reference = ours.pop("dropped_energy_estimate"), theirs.pop("dropped_energy_estimate")
    assert ours == theirs and estimates.keys() == reference.keys()
    for order in ["2"] if program == "toy" else list(reference):
        assert {**estimates[order], "hartree": None} == {**reference[order], "hartree": None}
        assert estimates[order]["hartree"] == pytest.approx(reference[order]["hartree"], rel=1e-9, abs=1e-12)
