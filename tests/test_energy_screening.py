"""Energy screening's decisions (pure): thresholds of zero keep the full expansion, the kept set is closed under
subsets and the same whatever order the energies arrive in, and each drop is recorded with its measure."""

from __future__ import annotations

import itertools
import math
import random
import re

import pytest

from qcmb_dask.errors import InvalidInput
from qcmb_dask.planning.energy_screening import (
    DEFAULT_MEASURE,
    OWN,
    EnergyRequest,
    EnergyScreen,
    check,
    full_increments,
    next_level_estimate,
    parse,
    run_through,
)


def model(nfragments: int, seed: int = 3):
    """Energies of a toy cluster: fragments on a line with random gaps, pair and triple terms decaying with
    distance, so that increments are real (not zero) and shrink with the k-mer's spread."""
    rng = random.Random(seed)
    x = [0.0]
    for _ in range(nfragments - 1):
        x.append(x[-1] + rng.uniform(2.5, 6.0))
    one = {i: -76.0 + rng.uniform(-0.01, 0.01) for i in range(1, nfragments + 1)}

    def energy(kmer):
        e = sum(one[i] for i in kmer)
        for i, j in itertools.combinations(kmer, 2):
            e += -0.02 * math.exp(-abs(x[i - 1] - x[j - 1]) / 2.0)
        for i, j, k in itertools.combinations(kmer, 3):
            spread = max(x[a - 1] for a in (i, j, k)) - min(x[a - 1] for a in (i, j, k))
            e += 0.004 * math.exp(-spread / 2.0)
        for quad in itertools.combinations(kmer, 4):
            spread = max(x[a - 1] for a in quad) - min(x[a - 1] for a in quad)
            e += -0.0008 * math.exp(-spread / 2.0)
        return e

    return energy


@pytest.mark.parametrize("thresholds", [{}, {3: 0.0, 4: 0.0}])
def test_no_threshold_or_zero_keeps_the_full_expansion(thresholds):
    energy = model(7)
    screen = run_through(EnergyScreen(7, 4, thresholds), energy)
    full = full_increments(7, 4, energy)
    assert {k: len(v) for k, v in screen.kept.items()} == {1: 7, 2: 21, 3: 35, 4: 35}
    assert screen.dropped == {} and screen.unfinished() == 0
    assert screen.increments == pytest.approx(full, abs=1e-12)
    assert screen.total() == pytest.approx(energy(tuple(range(1, 8))), abs=1e-10)  # nocp at full order: exact


@pytest.mark.parametrize("measure", ["max", "sum", "min"])
def test_kept_sets_are_closed_under_subsets_and_each_drop_has_its_measure(measure):
    energy = model(9)
    screen = run_through(EnergyScreen(9, 4, {3: 2e-4, 4: 5e-5}, measure=measure), energy)
    kept = {kmer for kmers in screen.kept.values() for kmer in kmers}
    for kmer in kept:
        assert all(sub in kept for r in range(1, len(kmer)) for sub in itertools.combinations(kmer, r)), kmer
    assert 0 < len(screen.kept[3]) < 84 and screen.dropped
    full = full_increments(9, 4, energy)
    aggregate = {"max": max, "sum": sum, "min": min}[measure]
    for kmer, value in screen.dropped.items():
        subs = [abs(full[s]) for s in itertools.combinations(kmer, len(kmer) - 1)]
        assert value == pytest.approx(aggregate(subs), abs=1e-12)
        assert value < {3: 2e-4, 4: 5e-5}[len(kmer)]
    for kmer in screen.kept[3]:
        subs = [abs(full[s]) for s in itertools.combinations(kmer, 2)]
        assert aggregate(subs) >= 2e-4
    # a 4-mer is never decided when one of its trimers was dropped; it counts as dropped with it
    assert all(all(s in kept for s in itertools.combinations(q, 3)) for q in screen.kept.get(4, []))
    # the screened total is the sum of the kept increments, each the full expansion's own
    assert screen.total() == pytest.approx(sum(full[k] for k in kept), abs=1e-10)


def test_the_decisions_do_not_depend_on_the_order_energies_arrive_in():
    energy = model(8, seed=5)
    reference = run_through(EnergyScreen(8, 4, {3: 1e-4, 4: 3e-5}, measure="max"), energy)
    for seed in range(5):
        rng = random.Random(seed)
        screen = EnergyScreen(8, 4, {3: 1e-4, 4: 3e-5}, measure="max")
        ready = screen.first()
        while ready:
            kmer = ready.pop(rng.randrange(len(ready)))  # any finished calculation may come next
            ready.extend(screen.computed(kmer, screen.nocp_increment(kmer, energy(kmer))))
        assert {k: sorted(v) for k, v in screen.kept.items()} == {k: sorted(v) for k, v in reference.kept.items()}
        assert screen.dropped == pytest.approx(reference.dropped)


def test_a_candidate_filter_and_a_repeated_energy():
    energy = model(6)
    near = lambda kmer: max(kmer) - min(kmer) <= 2  # noqa: E731  a distance cutoff in fragment numbers
    screen = EnergyScreen(6, 3, {}, candidate=near)
    assert screen.computed((1,), energy((1,))) == []
    assert screen.computed((1,), energy((1,))) == []  # reported twice: counted once
    assert screen.computed((2,), energy((2,))) == [(1, 2)]
    assert screen.computed((4,), energy((4,))) == [(2, 4)]  # (1, 4) is not a candidate
    run_through(screen, energy)
    assert all(near(k) for kmers in screen.kept.values() for k in kmers)


def test_an_unknown_measure_is_refused():
    with pytest.raises(ValueError, match="measure"):
        EnergyScreen(3, 3, {}, measure="product")


def test_a_cheap_methods_own_increments_decide_after_each_k_mer_is_computed():
    energy = model(8, seed=2)
    full = full_increments(8, 4, energy)
    thresholds = {2: 1e-5, 3: 1e-5, 4: 1e-6}
    screen = run_through(EnergyScreen(8, 4, thresholds, measure=OWN), energy)
    kept = {kmer for kmers in screen.kept.values() for kmer in kmers}
    for kmer in kept:  # closed under subsets, and each kept k-mer's own increment reaches its order's threshold
        assert all(sub in kept for r in range(1, len(kmer)) for sub in itertools.combinations(kmer, r)), kmer
        if len(kmer) > 1:
            assert abs(full[kmer]) >= thresholds[len(kmer)]
    for kmer, value in screen.dropped.items():  # computed, then dropped by its own increment
        assert value == pytest.approx(abs(full[kmer]), abs=1e-12) and value < thresholds[len(kmer)]
        assert all(sub in kept for sub in itertools.combinations(kmer, len(kmer) - 1))
    assert screen.dropped and 0 < len(screen.kept[4]) < 70
    assert screen.total() == pytest.approx(sum(full[k] for k in kept), abs=1e-10)


def test_candidates_above_the_ceiling_wait_and_are_decided_when_it_rises():
    energy = model(7, seed=4)
    reference = run_through(EnergyScreen(7, 4, {3: 1e-4}, measure="max"), energy)
    screen = run_through(EnergyScreen(7, 4, {3: 1e-4}, measure="max", ceiling=2), energy)
    assert screen.kept[3] == [] and screen.waiting_for(3) == 35
    assert screen.level_total(2) == pytest.approx(reference.level_total(2), abs=1e-14)
    queue = screen.raise_ceiling(3)
    while queue:
        kmer = queue.pop(0)
        queue.extend(screen.computed(kmer, screen.nocp_increment(kmer, energy(kmer))))
    assert screen.waiting_for(4) > 0 and screen.kept[4] == []
    queue = screen.raise_ceiling(4)
    while queue:
        kmer = queue.pop(0)
        queue.extend(screen.computed(kmer, screen.nocp_increment(kmer, energy(kmer))))
    assert {k: sorted(v) for k, v in screen.kept.items()} == {k: sorted(v) for k, v in reference.kept.items()}


def test_the_next_level_is_estimated_from_the_trend_from_3_body_on():
    assert next_level_estimate({1: -76.0, 2: -0.02}, 2) is None
    assert next_level_estimate({2: -0.02, 3: 0.002}, 3) == pytest.approx(0.0002)
    assert next_level_estimate({2: 0.0, 3: 0.002}, 3) is None


@pytest.mark.parametrize(
    "given, cutoffs, request_",
    [
        ({2: 12, 3: 8}, {2: 12, 3: 8}, None),
        ("2=12", "2=12", None),
        ({"energy": {3: 1e-5, "4": "1e-6"}}, None, EnergyRequest({3: 1e-5, 4: 1e-6})),
        ({"energy": "3=1e-5", "distance": {2: 9}, "measure": "MAX"}, {2: 9}, EnergyRequest({3: 1e-5}, "max")),
        ({"max_nbody": "auto", "tolerance": 1e-4}, None, EnergyRequest({}, DEFAULT_MEASURE, True, 1e-4)),
        ({"energy": {2: 1e-4}, "measure": "gfn2-xtb"}, None, EnergyRequest({2: 1e-4}, "gfn2-xtb")),
    ],
)
def test_the_screening_settings_are_read(given, cutoffs, request_):
    assert parse(given) == (cutoffs, request_)


@pytest.mark.parametrize(
    "given, says",
    [
        ({"energy": {3: -1e-5}}, "at least 0"),
        ({"energy": {3: "small"}}, "at least 0"),
        ({"energy": {3: float("nan")}}, "at least 0"),
        ({"energy": {1: 1e-5}}, "2 fragments or more"),
        ({"energy": {"three": 1e-5}}, "not an n-body order"),
        ({"energy": [1e-5]}, "expected {order: threshold"),
        ({"energy": {3: 1e-5}, "measure": "product"}, "measure='product'"),
        ({"energy": {3: 1e-5}, "cutof": 3}, "not screening settings"),
        ({"max_nbody": "auto"}, "needs a tolerance"),
        ({"max_nbody": 4, "tolerance": 1e-4}, "only 'auto'"),
        ({"energy": {3: 1e-5}, "tolerance": 1e-4}, "give max_nbody='auto' too"),
        ({"max_nbody": "auto", "tolerance": 0}, "positive number"),
        ({"measure": "max"}, "give energy thresholds"),
    ],
)
def test_bad_screening_settings_are_refused(given, says):
    with pytest.raises(InvalidInput, match=re.escape(says)):
        parse(given)


@pytest.mark.parametrize(
    "request_, max_nbody, driver, says",
    [
        (EnergyRequest({4: 1e-6}), 3, "energy", "above the input's max_nbody (3)"),
        (EnergyRequest({3: 1e-6}), 3, "hessian", "for driver energy or gradient, not hessian"),
        (EnergyRequest({2: 1e-4}), 3, "energy", "a 2-body energy threshold needs"),
    ],
)
def test_requests_the_input_cannot_take_are_refused(request_, max_nbody, driver, says):
    with pytest.raises(InvalidInput, match=re.escape(says)):
        check(request_, max_nbody, ["nocp"], driver)
