"""Measured durations refine the cost model (qcmb_dask.cost_history): the history file, the factors, the plan."""

import json
import warnings

import pytest

import qcmb_dask
from qcmb_dask.errors import StoreWarning
from qcmb_dask.graph import build
from qcmb_dask.planning import cost_history

from .conftest import mbe_input

MULTILEVEL = mbe_input(
    3,
    keywords={"bsse_type": "nocp", "levels": {1: "ccsd", 2: "mp2", 3: "hf"}},
    specs={"ccsd": ("ccsd", "6-31g"), "mp2": ("mp2", "6-31g"), "hf": ("hf", "sto-3g")},
)
HF_KIND = "pyscf|hf|sto-3g|energy"


def history_file(root, ratios):
    (root / cost_history.FILE).write_text(json.dumps({"format": cost_history.FORMAT, "ratios": ratios}))


def test_history_keeps_the_latest_ratios_per_kind(tmp_path):
    cost_history.record(tmp_path, [("a", 1.0), ("b", 5.0)])
    cost_history.record(tmp_path, [("a", float(i)) for i in range(2, 2 + cost_history.KEEP)])
    history = cost_history.load(tmp_path)
    assert history["b"] == [5.0]
    assert history["a"] == [float(i) for i in range(2, 2 + cost_history.KEEP)]  # the oldest (1.0) dropped
    assert cost_history.factors(history) == {"a": (pytest.approx(33.5), cost_history.KEEP)}  # b: too few


def test_no_store_means_no_history_and_nothing_written(tmp_path):
    cost_history.record(None, [("a", 1.0)])
    assert cost_history.load(None) == {}


def test_an_unreadable_history_is_a_warning_and_the_model_alone(tmp_path):
    (tmp_path / cost_history.FILE).write_text("{torn")
    with pytest.warns(StoreWarning, match="unreadable"):
        assert cost_history.load(tmp_path) == {}
    plan = qcmb_dask.plan(MULTILEVEL, cache=False)
    with pytest.warns(StoreWarning):
        assert cost_history.refine(plan, tmp_path) is plan


def test_an_unwritable_history_is_a_warning_not_an_error(tmp_path):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with pytest.warns(StoreWarning) as warned:
        cost_history.record(not_a_directory, [("a", 1.0)])
    assert [str(w.message).split(" (")[0] for w in warned] == [
        f"qcmb_dask: cost history not written to {not_a_directory}"
    ]


def test_measured_ratios_are_core_seconds_over_the_models_estimate_for_computed_calculations_only():
    plan = qcmb_dask.plan(MULTILEVEL, cache=False)
    first, second, third, fourth = plan.tasks[:4]
    records = [
        {"label": first.label, "ok": True, "from_store": False, "start": 10.0, "stop": 12.0},
        {"label": second.label, "ok": True, "from_store": True, "start": 10.0, "stop": 10.1},  # read back
        {"label": third.label, "ok": False, "from_store": False, "start": 10.0, "stop": 11.0},  # failed
        {"label": fourth.label, "ok": True, "from_store": False, "start": None, "stop": None},  # no timing
        {"label": "not in this plan", "ok": True, "from_store": False, "start": 1.0, "stop": 2.0},
    ]
    ratios = cost_history.measured_ratios(plan.tasks, records, cores_per_task=3)
    assert ratios == [(cost_history.kind_of(first), pytest.approx(2.0 * 3 / first.model_cost))]


def test_without_enough_measurements_the_plan_is_the_models(tmp_path):
    history_file(tmp_path, {HF_KIND: [2.0, 2.0]})  # below MIN_SAMPLES
    plan = qcmb_dask.plan(MULTILEVEL, cache=tmp_path)
    assert plan.cost_factors == {}
    assert all(t.cost == t.model_cost for t in plan)
    assert "earlier" not in str(plan)


def test_a_measured_kind_scales_its_estimates_and_the_rest_of_its_program_follows(tmp_path):
    history_file(tmp_path, {HF_KIND: [3.0, 4.0, 5.0]})
    plan = qcmb_dask.plan(MULTILEVEL, cache=tmp_path)
    for task in plan:
        assert task.cost == pytest.approx(4.0 * task.model_cost)
    assert plan.cost_factors["hf"] == (4.0, 3, "calculations like these")
    assert plan.cost_factors["mp2"] == (4.0, 3, "pyscf calculations")  # same program, same machine
    assert 'Model chemistry "hf" (pyscf hf/sto-3g): 7   (estimates: the model\'s x 4, from 3 earlier calculations' in (
        str(plan)
    )

    history_file(tmp_path, {"nwchem|hf|sto-3g|energy": [0.5, 0.5, 0.5]})  # another program: the machine's speed
    assert qcmb_dask.plan(MULTILEVEL, cache=tmp_path).cost_factors["ccsd"] == (0.5, 3, "calculations")


def test_measured_factors_reorder_the_priorities(tmp_path):
    """The model ranks the CCSD monomers first; measurements saying HF trimers take 1000x the model's estimate
    (a program whose start-up dwarfs small calculations) put them first (in the longest-first order; no level is
    put first here, whatever its cost)."""
    import dask

    model = qcmb_dask.plan(MULTILEVEL, cache=False)
    history_file(tmp_path, {HF_KIND: [1000.0] * 3, "pyscf|ccsd|6-31g|energy": [1.0] * 3})
    measured = qcmb_dask.plan(MULTILEVEL, cache=tmp_path)

    def first_to_run(plan):
        with dask.config.set({"qcmb_dask.early-levels-tolerance": 0}):  # longest first alone
            graph = build(plan, task_config={"ncores": 1})
        priority = {t.model_chemistry + " " + t.label: graph.priorities[graph.fragments[t.label].key] for t in plan}
        return max(priority, key=priority.get).split()[0]

    assert first_to_run(model) == "ccsd"
    assert first_to_run(measured) == "hf"


@pytest.mark.slow
def test_a_run_records_what_it_computed_and_the_next_plan_uses_it(tmp_path):
    data = mbe_input(2, keywords={"bsse_type": "nocp"})
    qcmb_dask.compute(data, cluster="sync", cache=tmp_path, progress=False)
    history = cost_history.load(tmp_path)
    assert list(history) == [HF_KIND] and len(history[HF_KIND]) == 3  # 2 monomers + the dimer
    assert all(ratio > 0 for ratio in history[HF_KIND])

    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreWarning)
        qcmb_dask.compute(data, cluster="sync", cache=tmp_path, progress=False)  # all read back: nothing measured
    assert cost_history.load(tmp_path) == history
    plan = qcmb_dask.plan(data, cache=tmp_path)
    assert plan.cost_factors[next(iter(plan.cost_factors))][1:] == (3, "calculations like these")
