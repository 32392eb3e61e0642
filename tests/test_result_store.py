"""The fragment result store: keys, resume, reuse across inputs, torn entries, a full disk, failures that
leave the others stored, retries, escalation, partial results. In-process runs of a PySCF program with
injected faults (``FaultyHarness``), counting every calculation it is asked for."""

import dataclasses
import errno
import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from qcelemental.models.v2 import AtomicInput

import qcmb_dask
from qcmb_dask import store
from qcmb_dask.errors import FragmentsFailed

from .conftest import NOCP, assert_same_answer, entries, faulty_input
from .fake_programs import FaultyHarness, calls


def run(tmp_path, cache="store", data=None, **rules):
    """compute() in-process with the faulty program logging to tmp_path/calls.log."""
    options = {k: rules.pop(k) for k in ("retries", "escalate", "on_error") if k in rules}
    harness = FaultyHarness(extras={"log": str(tmp_path / "calls.log"), **rules})
    cache = tmp_path / cache if isinstance(cache, str) else cache
    return qcmb_dask.compute(
        data or faulty_input(), "sync", harnesses=[harness], cache=cache, progress=False, **options
    )


def test_a_rerun_takes_every_fragment_from_the_store(scenario, tmp_path, reference):
    n = len(qcmb_dask.plan(faulty_input()))
    first = run(tmp_path)
    assert calls(tmp_path / "calls.log") == n
    assert len(entries(tmp_path / "store")) == n
    second = run(tmp_path)
    assert calls(tmp_path / "calls.log") == n  # nothing recomputed
    assert_same_answer(first, reference)
    scenario.record(
        "the same input run twice",
        f"second run: 0 of {n} computed",
        calls=calls(tmp_path / "calls.log"),
        stored=n,
        answer=assert_same_answer(second, reference),
    )


def test_without_a_store_every_run_computes_everything(tmp_path):
    n = len(qcmb_dask.plan(faulty_input()))
    run(tmp_path, cache=False)
    run(tmp_path, cache=False)
    assert calls(tmp_path / "calls.log") == 2 * n
    assert not (tmp_path / "store").exists()


def _atomic_input(keywords=None, shift=0.0, charge=0, basis="sto-3g", method="hf", driver="energy"):
    geometry = [0.0, 0.0, 0.0, 0.0, 0.0, 1.8 + shift]
    return AtomicInput(
        molecule={
            "symbols": ["H", "H"],
            "geometry": geometry,
            "molecular_charge": charge,
            "molecular_multiplicity": 1 + abs(charge),
        },
        specification={"driver": driver, "model": {"method": method, "basis": basis}, "keywords": keywords or {}},
    )


def test_key_ignores_dictionary_order_and_driver_but_changes_with_anything_that_changes_the_answer():
    key = lambda inp, program="pyscf", version="2.14.0": store.calculation_key(inp, program, version)  # noqa: E731
    base = key(_atomic_input({"conv_tol": 1e-10, "max_cycle": 50}))
    assert key(_atomic_input({"max_cycle": 50, "conv_tol": 1e-10})) == base
    assert key(_atomic_input({"conv_tol": 1e-10, "max_cycle": 50}, driver="gradient")) == base  # driver: file name
    assert key(_atomic_input({"conv_tol": 1e-10, "max_cycle": 50}, method="HF", basis="STO-3G")) == base
    different = [
        key(_atomic_input({"conv_tol": 1e-10, "max_cycle": 50}, shift=1e-6)),
        key(_atomic_input({"conv_tol": 1e-10, "max_cycle": 50}, charge=1)),
        key(_atomic_input({"conv_tol": 1e-10, "max_cycle": 50}, basis="6-31g")),
        key(_atomic_input({"conv_tol": 1e-10, "max_cycle": 50}, method="b3lyp")),
        key(_atomic_input({"conv_tol": 1e-11, "max_cycle": 50})),
        key(_atomic_input({"conv_tol": 1e-10, "max_cycle": 50}), program="nwchem"),
        key(_atomic_input({"conv_tol": 1e-10, "max_cycle": 50}), version="2.15.0"),
        store.calculation_key(_atomic_input({"conv_tol": 1e-10, "max_cycle": 50}), "pyscf", "2.14.0", {"rev": 2}),
    ]
    assert len(set(different)) == len(different) and base not in different


def test_a_changed_harness_default_changes_the_key(monkeypatch):
    """Stored numbers computed under other harness defaults must not be served as this harness's."""
    from qcmb_dask.programs.pyscf import PySCFHarness
    from qcmb_dask.programs.pyscf import harness as pyscf_harness

    inp = _atomic_input()
    before = store.calculation_key(inp, "pyscf", "2.14.0", store.harness_fingerprint(PySCFHarness()))

    @dataclasses.dataclass(frozen=True)
    class LooserDefaults(pyscf_harness.PySCFOptions):
        conv_tol: float = 1e-6

    monkeypatch.setattr(pyscf_harness, "PySCFOptions", LooserDefaults)
    after = store.calculation_key(inp, "pyscf", "2.14.0", store.harness_fingerprint(PySCFHarness()))
    assert after != before


def test_ghost_atoms_are_part_of_the_key(tmp_path):
    """A monomer in the dimer basis (cp) is another calculation than the bare monomer (nocp)."""
    cp_plan = qcmb_dask.plan(faulty_input(2, keywords={"bsse_type": "cp", "return_total_data": True}))
    run(tmp_path, data=faulty_input(2, keywords={"bsse_type": "cp", "return_total_data": True}))
    assert calls(tmp_path / "calls.log") == len(cp_plan)  # 2 ghosted + 2 bare monomers + dimer: all distinct
    assert len(entries(tmp_path / "store")) == len(cp_plan) == 5


def test_a_nocp_run_after_a_cp_run_computes_only_what_cp_did_not(scenario, tmp_path):
    cp, nocp = faulty_input(keywords={"bsse_type": "cp"}), faulty_input(keywords=NOCP)
    cp_calcs = {(t.real, t.basis) for t in qcmb_dask.plan(cp)}
    nocp_calcs = {(t.real, t.basis) for t in qcmb_dask.plan(nocp)}
    shared = cp_calcs & nocp_calcs
    assert shared  # the trimer in its own basis
    run(tmp_path, data=cp)
    run(tmp_path, data=nocp)
    assert calls(tmp_path / "calls.log") == len(cp_calcs) + len(nocp_calcs) - len(shared)
    scenario.record(
        "nocp run after a cp run (one store)",
        f"nocp: {len(shared)} of {len(nocp_calcs)} taken from the cp run",
        calls=calls(tmp_path / "calls.log"),
        stored=len(entries(tmp_path / "store")),
    )


def test_a_larger_cluster_at_the_same_geometry_reuses_the_smaller_ones_nocp_calculations(tmp_path, reference):
    """The dimer's monomers and the dimer itself are the same calculations inside the trimer (nocp: no ghosts)."""
    run(tmp_path, data=faulty_input(2))
    assert calls(tmp_path / "calls.log") == 3
    trimer = run(tmp_path)
    assert calls(tmp_path / "calls.log") == 3 + len(qcmb_dask.plan(faulty_input())) - 3
    assert_same_answer(trimer, reference)


def test_an_energy_run_reuses_a_gradient_run_but_a_gradient_run_needs_gradients(scenario, tmp_path, reference):
    n = len(qcmb_dask.plan(faulty_input()))
    gradient = run(tmp_path, data=faulty_input(driver="gradient"))
    energy = run(tmp_path)
    assert calls(tmp_path / "calls.log") == n
    assert_same_answer(energy, reference)
    assert gradient.properties.nocp_corrected_interaction_energy == pytest.approx(
        energy.properties.nocp_corrected_interaction_energy, abs=1e-10
    )
    run(tmp_path, cache="energy-first")
    run(tmp_path, cache="energy-first", data=faulty_input(driver="gradient"))
    assert calls(tmp_path / "calls.log") == 3 * n  # the energies could not serve the gradient run
    scenario.record(
        "energy run after a gradient run; gradient after energy",
        f"energy: 0 of {n} computed; gradient after energy: all {n}",
        calls=3 * n,
        stored=f"{n} + {2 * n}",
        answer=assert_same_answer(energy, reference),
    )


def test_a_torn_entry_is_recomputed_with_a_warning_never_used(scenario, tmp_path, reference):
    n = len(qcmb_dask.plan(faulty_input()))
    run(tmp_path)
    victim = entries(tmp_path / "store")[0]
    blob = victim.read_bytes()
    victim.write_bytes(blob[: len(blob) // 2])  # a write cut short
    with pytest.warns(store.StoreWarning, match="torn or corrupt"):
        again = run(tmp_path)
    assert calls(tmp_path / "calls.log") == n + 1
    key, driver, _ = victim.name.split(".")
    assert qcmb_dask.ResultStore(tmp_path / "store").load(key, driver) is not None  # rewritten whole
    scenario.record(
        "a store entry cut in half, then a rerun",
        "StoreWarning; that 1 fragment recomputed, entry rewritten",
        calls=n + 1,
        stored=n,
        answer=assert_same_answer(again, reference),
    )


def test_a_corrupted_number_in_an_entry_is_caught_by_its_checksum(tmp_path):
    run(tmp_path)
    victim = entries(tmp_path / "store")[0]
    victim.write_bytes(victim.read_bytes().replace(b'"return_energy":-', b'"return_energy":+', 1))
    with pytest.warns(store.StoreWarning, match="torn or corrupt"):
        run(tmp_path)


def test_a_full_disk_keeps_the_answer_and_says_the_results_were_not_stored(scenario, tmp_path, monkeypatch, reference):
    def disk_full(f, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "_write_bytes", disk_full)
    with pytest.warns(store.StoreWarning) as warned:
        result = run(tmp_path)
    messages = [str(w.message) for w in warned]
    assert any(re.search(r"could not be written to the store .*No space left on device", m) for m in messages)
    assert any(re.search(r"cost history not written .*No space left on device", m) for m in messages)
    assert entries(tmp_path / "store") == []
    assert not (tmp_path / "store" / "cost-history.json").exists()
    assert list((tmp_path / "store").glob("??/.*.tmp")) == []  # no temporary files left behind
    scenario.record(
        "disk full (ENOSPC on every store write)",
        "StoreWarning naming the error; no temporary files left",
        calls=calls(tmp_path / "calls.log"),
        stored=0,
        answer=assert_same_answer(result, reference),
    )


def test_a_store_that_cannot_be_written_is_refused_before_any_calculation(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ValueError, match="cannot be written"):
        run(tmp_path, cache=blocker / "store")
    assert calls(tmp_path / "calls.log") == 0


def test_the_default_store_is_in_the_users_cache_directory(tmp_path, monkeypatch):
    import dask

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with dask.config.set({"qcmb_dask.cache": True}):
        run(tmp_path, cache=None)
    assert len(entries(tmp_path / "xdg" / "qcmb_dask" / "results")) == len(qcmb_dask.plan(faulty_input()))
    assert qcmb_dask.ResultStore(tmp_path / "xdg" / "qcmb_dask" / "results").clear() == 7


def test_a_deterministic_failure_is_not_retried_and_every_other_fragment_is_stored(scenario, tmp_path, reference):
    n = len(qcmb_dask.plan(faulty_input()))
    with pytest.raises(FragmentsFailed) as info:
        run(tmp_path, fail_nreal=2, retries=5)
    err = info.value
    assert len(err.failures) == 3
    assert {f.nbody for f in err.failures} == {2} and {f.error_type for f in err.failures} == {"input_error"}
    for failure in err.failures:
        assert failure.label in str(err)
    assert "run the same input again" in str(err) and str(tmp_path / "store") in str(err)
    for failure in err.failures:  # the whole FailedOperation is kept, and the message says where
        assert f"input and full error: {failure.record}" in str(err)
        record = json.loads(Path(failure.record).read_text())
        assert "injected: 2-water calculations always fail" in record["error"]["error_message"]
        assert sum(record["input_data"]["molecule"]["real"]) == 6
    assert calls(tmp_path / "calls.log") == n  # each dimer tried once: input errors are not retried
    assert len(entries(tmp_path / "store")) == n - 3
    fixed = run(tmp_path)  # the cause fixed: only the three dimers run
    assert calls(tmp_path / "calls.log") == n + 3
    assert not list((tmp_path / "store" / "failed").iterdir())  # the records of fixed failures are gone
    scenario.record(
        "3 dimers fail with an input error (retries=5), then a fixed rerun",
        "FragmentsFailed lists all 3, not retried; rerun computes only those 3",
        calls=n + 3,
        stored=n,
        answer=assert_same_answer(fixed, reference),
    )


def test_random_failures_are_retried_until_they_succeed(scenario, tmp_path, reference):
    n = len(qcmb_dask.plan(faulty_input()))
    result = run(tmp_path, random_failure=0.3, seed=7, retries=20)
    assert_same_answer(result, reference)
    log = (tmp_path / "calls.log").read_text()
    assert calls(tmp_path / "calls.log", "done") == n
    assert calls(tmp_path / "calls.log") > n, log  # some calls failed and were retried
    scenario.record(
        "random errors with p=0.3 on every call",
        f"{calls(tmp_path / 'calls.log', 'random_error')} random errors retried by QCEngine",
        calls=calls(tmp_path / "calls.log"),
        stored=len(entries(tmp_path / "store")),
        answer=assert_same_answer(result, reference),
    )


def test_random_failures_without_retries_fail_naming_the_error_type(tmp_path):
    with pytest.raises(FragmentsFailed) as info:
        run(tmp_path, random_failure=0.3, seed=7, retries=0)
    assert {f.error_type for f in info.value.failures} == {"random_error"}


def test_on_error_partial_returns_the_highest_complete_level(scenario, tmp_path, reference):
    partial = run(tmp_path, fail_nreal=3, on_error="partial")
    assert isinstance(partial, qcmb_dask.PartialResult)
    assert partial.nbody == 2
    assert [f.nbody for f in partial.failures] == [3]
    assert partial.level.interaction_energy("nocp") == pytest.approx(
        reference.properties.nocp_corrected_interaction_energy_through_2_body, abs=1e-9
    )
    assert sorted(partial.levels) == [1, 2]
    scenario.record(
        "the trimer fails, on_error='partial'",
        "PartialResult through 2-body and the failure",
        calls=calls(tmp_path / "calls.log"),
        stored=len(entries(tmp_path / "store")),
        answer="2-body IE = QCManyBody's 2-body IE",
    )


def test_escalation_retries_a_convergence_failure_once_with_the_documented_fallback(scenario, tmp_path, reference):
    with pytest.raises(FragmentsFailed, match="convergence_error"):
        run(tmp_path, fallback_nreal=2)
    result = run(tmp_path, fallback_nreal=2, escalate=True)
    assert_same_answer(result, reference)
    n = len(qcmb_dask.plan(faulty_input()))
    # First run: 7 calls (3 dimers failed). Second: the 3 dimers (4 stored), each twice (plain, then fallback).
    assert calls(tmp_path / "calls.log") == n + 2 * 3
    run(tmp_path, fallback_nreal=2)  # stored under the calculation's own key: no escalation needed again
    assert calls(tmp_path / "calls.log") == n + 2 * 3
    scenario.record(
        "3 dimers converge only with a level shift; escalate=True",
        "fails without escalation; with it, each dimer tried twice",
        calls=n + 2 * 3,
        stored=n,
        answer=assert_same_answer(result, reference),
    )


def _script(tmp_path, cache, sleep, out):
    return textwrap.dedent(
        f"""
        import json, qcmb_dask
        from tests.conftest import mbe_input
        from tests.fake_programs import FaultyHarness
        h = FaultyHarness(extras={{"log": {str(tmp_path / "calls.log")!r}, "sleep": {sleep}}})
        data = mbe_input(3, keywords={{"bsse_type": "nocp"}}, program="faulty")
        r = qcmb_dask.compute(data, "sync", harnesses=[h], cache={str(cache)!r}, progress=False)
        open({str(out)!r}, "w").write(json.dumps(r.properties.nocp_corrected_interaction_energy))
        """
    )


def _start(script):
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen([sys.executable, "-c", script], cwd=root)


@pytest.mark.slow
def test_a_killed_client_loses_only_the_fragments_that_were_running(scenario, tmp_path, reference):
    n = len(qcmb_dask.plan(faulty_input()))
    proc = _start(_script(tmp_path, tmp_path / "store", 0.5, tmp_path / "never"))
    deadline = time.time() + 120
    while len(entries(tmp_path / "store")) < 3 and time.time() < deadline:
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no cleanup, no finally blocks
    proc.wait()
    stored = len(entries(tmp_path / "store"))
    assert 3 <= stored < n
    before = calls(tmp_path / "calls.log")
    result = run(tmp_path)
    assert calls(tmp_path / "calls.log") - before == n - stored
    scenario.record(
        "client process SIGKILLed mid-run, then rerun",
        f"{stored} of {n} were stored; the rerun computed the other {n - stored}",
        calls=calls(tmp_path / "calls.log"),
        stored=n,
        answer=assert_same_answer(result, reference),
    )


@pytest.mark.slow
def test_two_runs_sharing_one_store_at_once_both_get_the_answer(scenario, tmp_path, reference):
    n = len(qcmb_dask.plan(faulty_input()))
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    procs = [_start(_script(tmp_path, tmp_path / "shared", 0.2, out)) for out in outs]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    for out in outs:
        value = float(out.read_text())
        assert value == pytest.approx(reference.properties.nocp_corrected_interaction_energy, abs=1e-9)
    assert len(entries(tmp_path / "shared")) == n
    assert n <= calls(tmp_path / "calls.log") <= 2 * n
    for entry in entries(tmp_path / "shared"):  # every entry whole and valid
        key, driver, _ = entry.name.split(".")
        assert qcmb_dask.ResultStore(tmp_path / "shared").load(key, driver, exact_driver=True) is not None
    np.testing.assert_equal(len(list((tmp_path / "shared").glob("??/.*.tmp"))), 0)
    scenario.record(
        "two runs of one input on one store at once",
        "both answers right, every entry whole",
        calls=calls(tmp_path / "calls.log"),
        stored=n,
        answer="both = QCManyBody (1e-9 Eh)",
    )


def test_a_store_that_turns_unwritable_on_one_worker_loses_nothing_the_others_stored(
    scenario, tmp_path, reference, local_client
):
    """Worker "0" can no longer write after its first calculation: a warning names what was not kept, every
    result the other worker stored is there, the answer is whole, and a rerun computes only what is missing."""
    n = len(qcmb_dask.plan(faulty_input()))
    rules = {"log": str(tmp_path / "calls.log"), "store_fails_on_worker": 0, "store_fails_after": 1, "sleep": 0.2}
    harness = FaultyHarness(extras=rules)
    local_client.restart()  # fresh worker processes: the fault counts calls from here
    with pytest.warns(store.StoreWarning, match=r"(\d+) fragment result\(s\) could not be written.*Read-only") as w:
        result = qcmb_dask.compute(faulty_input(), local_client, harnesses=[harness], cache=tmp_path / "store")
    not_kept = int(re.search(r"(\d+) fragment result", str(w[0].message)).group(1))
    stored = len(entries(tmp_path / "store"))
    assert not_kept >= 1 and stored == n - not_kept and stored >= 2  # the other worker's results are all there
    answer = assert_same_answer(result, reference)
    local_client.restart()  # the disk is back
    healthy = FaultyHarness(extras={"log": str(tmp_path / "calls.log")})
    again = qcmb_dask.compute(faulty_input(), local_client, harnesses=[healthy], cache=tmp_path / "store")
    assert calls(tmp_path / "calls.log") == n + not_kept  # the rerun computed only what was not kept
    assert len(entries(tmp_path / "store")) == n
    assert_same_answer(again, reference)
    scenario.record(
        "the store turns read-only on one of 2 workers after its first calculation",
        f"StoreWarning: {not_kept} not kept; the other {stored} stored; the rerun computed only those {not_kept}",
        calls=calls(tmp_path / "calls.log"),
        stored=n,
        answer=answer,
    )
