"""A QCManyBody user switches one import: every input QCManyBody computes is computed to the same numbers, the
computer has QCManyBody's signature, and the proposed parallel API's ``executor_config`` works."""

import copy
import inspect
import json
import logging

import pytest

import qcmb_dask
from qcmb_dask import InvalidArgument

from .conftest import assert_same_result, mbe_input, qcmanybody_reference, requires_nwchem


def several_programs(levels: dict, nwaters: int = 2) -> dict:
    """Shaped like QCManyBody's own tests: one specification per program, the levels naming a subset of them
    (psi4 is not installed here: a specification no level uses must not matter)."""
    data = mbe_input(nwaters, specs={"pyscf-hf": ("hf", "sto-3g"), "pyscf-big": ("hf", "6-31g")})
    specs = data["specification"]["specification"]
    specs["psi4-hf"] = {**copy.deepcopy(specs["pyscf-hf"]), "program": "psi4"}
    specs["nwchem-hf"] = {**copy.deepcopy(specs["pyscf-hf"]), "program": "nwchem"}
    specs["psi4-dup"] = copy.deepcopy(specs["psi4-hf"])  # the same as psi4-hf: unused, so no refusal either
    data["specification"]["keywords"] = {"bsse_type": ["nocp", "cp"], "levels": levels}
    return data


def test_specifications_the_levels_do_not_use_are_neither_checked_nor_run():
    data = several_programs({2: "pyscf-hf"})
    ours = qcmb_dask.compute(data, "sync", progress=False)
    assert_same_result(ours, qcmanybody_reference(data))
    assert ours.extras["qcmb_dask"]["computed"] == 5  # 2 monomers in each basis and the dimer, PySCF only


def test_supersystem_level_among_unused_specifications():
    data = several_programs({1: "pyscf-hf", "supersystem": "pyscf-big"}, nwaters=3)
    data["specification"]["keywords"]["bsse_type"] = "nocp"
    assert_same_result(qcmb_dask.compute(data, "sync", progress=False), qcmanybody_reference(data))


def test_v1_input_with_unused_specifications_gives_the_v1_result():
    from qcmanybody.models.v1 import ManyBodyInput

    data = several_programs({1: "pyscf-hf", 2: "pyscf-big"})
    v1 = ManyBodyInput(**data)
    ours = qcmb_dask.v1.ManyBodyComputer.from_manybodyinput(v1, cluster="sync", progress=False)
    assert_same_result(ours, qcmanybody_reference(v1))


@requires_nwchem
def test_two_real_programs_at_two_levels_and_an_uninstalled_one_unused():
    data = several_programs({1: "nwchem-hf", 2: "pyscf-big"})
    assert_same_result(qcmb_dask.compute(data, "sync", progress=False), qcmanybody_reference(data))


def test_the_computers_have_qcmanybodys_signature_and_meaning():
    import qcmanybody
    import qcmanybody.v1
    import qcmanybody.v2

    import qcmb_dask.v1
    import qcmb_dask.v2

    for ours, theirs in (
        (qcmb_dask.v2.ManyBodyComputer, qcmanybody.v2.ManyBodyComputer),
        (qcmb_dask.v1.ManyBodyComputer, qcmanybody.v1.ManyBodyComputer),
        (qcmb_dask.ManyBodyComputer, qcmanybody.ManyBodyComputer),
    ):
        mine = list(inspect.signature(ours.from_manybodyinput).parameters.values())
        upstream = list(inspect.signature(theirs.from_manybodyinput).parameters.values())
        assert [(p.name, p.default, p.kind) for p in mine[: len(upstream)]] == [
            (p.name, p.default, p.kind) for p in upstream
        ]
        assert all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in mine[len(upstream) :])
        # A positional False means "build, don't run" there, and so here: QCManyBody's own computer comes back.
        computer = ours.from_manybodyinput(mbe_input(2), False)
        assert type(computer) is theirs


def test_a_dict_is_read_as_the_computer_of_that_version_reads_it():
    import qcmanybody.models.v1 as v1
    import qcmanybody.models.v2 as v2

    data = mbe_input(2)
    assert isinstance(qcmb_dask.v2.ManyBodyComputer.from_manybodyinput(data, cluster="sync"), v2.ManyBodyResult)
    result = qcmb_dask.ManyBodyComputer.from_manybodyinput(data, cluster="sync")
    assert isinstance(result, v1.ManyBodyResult)  # qcmanybody.ManyBodyComputer is the v1 computer in 0.8
    assert_same_result(result, qcmanybody_reference(v1.ManyBodyInput(**data)))


def test_executor_config_maps_onto_workers_retries_the_store_logging_and_progress(tmp_path):
    seen, levels = [], []

    def progress(task_id, completed, total):
        seen.append((task_id, completed, total))
        levels.append(logging.getLogger("qcmb_dask").getEffectiveLevel())

    checkpoint = tmp_path / "mbe.ckpt"
    config = {
        "n_workers": 1,
        "timeout_per_task": 600,
        "max_retries": 1,
        "checkpoint_file": str(checkpoint),
        "log_level": "INFO",
        "progress_callback": progress,
    }
    logging.getLogger("qcmb_dask").setLevel(logging.NOTSET)
    result = qcmb_dask.v2.ManyBodyComputer.from_manybodyinput(
        mbe_input(2), executor_config=config, progress=False
    )  # the embedded cluster: timeout_per_task needs worker processes
    assert [s[1:] for s in seen] == [(1, 3), (2, 3), (3, 3)]
    assert {s[0] for s in seen} == {r["label"] for r in qcmb_dask.timeline(result)}
    record = result.extras["qcmb_dask"]
    assert record["store"] == str(tmp_path / "mbe.ckpt.store") and record["computed"] == 3
    assert levels == [logging.INFO] * 3  # during the run
    assert logging.getLogger("qcmb_dask").level == logging.NOTSET  # and put back after it
    again = qcmb_dask.v2.ManyBodyComputer.from_manybodyinput(
        mbe_input(2), executor_config={"cache_dir": str(tmp_path / "mbe.ckpt.store")}, cluster="sync"
    )
    assert again.extras["qcmb_dask"]["from_store"] == 3


@pytest.mark.parametrize(
    "config, words",
    [
        ({"n_wrokers": 2}, "unknown key(s) n_wrokers"),
        ({"cache_dir": "a", "checkpoint_file": "b"}, "not both"),
        ({"progress_callback": 3}, "expected a function"),
        ({"log_level": "LOUD"}, "log_level"),
    ],
)
def test_executor_config_mistakes_are_refused_by_name(config, words):
    with pytest.raises(InvalidArgument, match="executor_config") as err:
        qcmb_dask.v2.ManyBodyComputer.from_manybodyinput(mbe_input(2), executor_config=config, cluster="sync")
    assert words in str(err.value)


def test_an_option_given_twice_is_refused():
    with pytest.raises(InvalidArgument, match="given both"):
        qcmb_dask.v2.ManyBodyComputer.from_manybodyinput(
            mbe_input(2), executor_config={"n_workers": 2}, n_workers=3, cluster="sync"
        )


def test_an_executor_config_object_of_the_proposed_api_is_read_by_attribute(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class ExecutorConfig:
        n_workers: int = 1
        cache_dir: str = str(tmp_path / "store")

    result = qcmb_dask.v2.ManyBodyComputer.from_manybodyinput(
        mbe_input(2), executor_config=ExecutorConfig(), cluster="sync"
    )
    assert result.extras["qcmb_dask"]["store"] == str(tmp_path / "store")
    assert json.loads(result.model_dump_json())["extras"]["qcmb_dask"]["computed"] == 3
