"""The analysis as sums (qcmb_dask.worker.sums) against QCManyBody's own ``analyze``: random fragment energies,
gradients and Hessians, every BSSE combination, multi-level and supersystem levels, interaction or total data.

Pure: no program runs. Batches of any size, merged in any order, give QCManyBody's numbers and text.
"""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from qcelemental.models.v2 import Molecule
from qcmanybody import ManyBodyCore

from qcmb_dask.worker.sums import Expansion, Sums, analyzed, batch_sums, contributions

# four fragments of 1, 2, 1 and 3 atoms: resizing to the whole molecule is exercised
MOLECULE = Molecule(
    symbols=["He", "H", "H", "Ne", "O", "H", "H"],
    geometry=[[0, 0, 0], [0, 0, 5], [0, 0.74 / 0.529, 5], [5, 0, 0], [5, 5, 0], [5, 6.8, 0], [6.8, 5, 0]],
    fragments=[[0], [1, 2], [3], [4, 5, 6]],
    molecular_multiplicity=1,
    fragment_multiplicities=[1, 1, 1, 1],
)

BSSE = [["cp"], ["nocp"], ["vmfc"], ["cp", "nocp"], ["nocp", "cp", "vmfc"], ["vmfc", "cp"]]
LEVELS = [
    {1: "a", 2: "a"},
    {1: "a", 2: "a", 3: "a", 4: "a"},
    {1: "a", 2: "b", 3: "c"},
    {1: "a", 2: "a", 3: "b"},
    {1: "a", 2: "a", "supersystem": "s"},
    {1: "a", 2: "b", "supersystem": "s"},
]


def _core(bsse, levels, rtd, ssio=False):
    return ManyBodyCore(MOLECULE, bsse, levels, return_total_data=rtd, supersystem_ie_only=ssio, embedding_charges={})


def _values(core, props, seed):
    rng = np.random.default_rng(seed)
    values = {}
    for mc, compute_dict in core.compute_map.items():
        for compute_list in compute_dict["all"].values():
            for real, basis in compute_list:
                natom = sum(core.fragment_size_dict[i] for i in basis)
                label = f'["{mc}", {list(real)}, {list(basis)}]'
                entry = {"energy": -100 * len(real) + rng.normal()}
                if "gradient" in props:
                    entry["gradient"] = rng.normal(size=(natom, 3))
                if "hessian" in props:
                    h = rng.normal(size=(3 * natom, 3 * natom))
                    entry["hessian"] = h + h.T
                values[label] = entry
    return values


def _ours(core, values, batch, seed):
    expansion = Expansion.of(core)
    labels = list(values)
    random.Random(seed).shuffle(labels)  # batches in any order
    total = Sums()
    for start in range(0, len(labels), batch):
        part = labels[start : start + batch]
        total.merge(batch_sums({"x": expansion}, part, [values[label] for label in part], keep_each=True))
    return analyzed(expansion, total, "x", order=list(values))


def _same(ours, ref):
    assert ours["stdout"] == ref["stdout"]
    assert set(ours["results"]) == set(ref["results"])
    for key, value in ref["results"].items():
        np.testing.assert_allclose(ours["results"][key], value, rtol=0, atol=1e-9, err_msg=key)
    assert ours["energy_body_dict"].keys() == ref["energy_body_dict"].keys()
    for key, value in ref["energy_body_dict"].items():
        assert abs(ours["energy_body_dict"][key] - value) < 1e-10, key
    for key in ("ret_energy", "ret_gradient", "ret_hessian"):
        if key in ref:
            np.testing.assert_allclose(ours[key], ref[key], rtol=0, atol=1e-9, err_msg=key)
    assert list(ours["component_properties"]) == list(ref["component_properties"])
    for label, props in ref["component_properties"].items():
        for name, value in props.items():
            np.testing.assert_allclose(ours["component_properties"][label][name], value, rtol=0, atol=0)


@pytest.mark.parametrize("levels", LEVELS, ids=lambda levels: "-".join(f"{k}{v}" for k, v in levels.items()))
@pytest.mark.parametrize("bsse", BSSE, ids="+".join)
@pytest.mark.parametrize("rtd", [True, False], ids=["total", "interaction"])
def test_energies_equal_qcmanybody(bsse, levels, rtd):
    core = _core(bsse, levels, rtd)
    values = _values(core, ("energy",), 1)
    ref = core.analyze(values)
    for batch in (1, 3, 1000):
        _same(_ours(core, values, batch, batch), ref)


@pytest.mark.parametrize("props", [("energy", "gradient"), ("energy", "gradient", "hessian")], ids=len)
@pytest.mark.parametrize("bsse", [["cp", "nocp", "vmfc"], ["nocp"]], ids="+".join)
@pytest.mark.parametrize("levels", [LEVELS[1], LEVELS[2], LEVELS[5]], ids=["4", "multilevel", "supersystem"])
def test_derivatives_equal_qcmanybody(props, bsse, levels):
    core = _core(bsse, levels, True)
    values = _values(core, props, 2)
    _same(_ours(core, values, 4, 0), core.analyze(values))


def test_supersystem_interaction_energy_only():
    core = _core(["cp", "nocp"], {1: "a", 2: "a", 3: "a", 4: "a"}, False, ssio=True)
    values = _values(core, ("energy",), 3)
    _same(_ours(core, values, 2, 3), core.analyze(values))


@pytest.mark.parametrize("bsse", BSSE, ids="+".join)
@pytest.mark.parametrize("levels", LEVELS[:4], ids=str)
def test_each_calculation_enters_the_sums_qcmanybody_makes(bsse, levels):
    """contributions() against the compute lists ``_assemble_nbody_components`` builds (core.py lines 340-368)."""
    for rtd in (True, False):
        core = _core(bsse, levels, rtd)
        expansion = Expansion.of(core)
        for mc, nbodies in core.nbodies_per_mc_level.items():
            compute_dict = core.compute_map[mc]
            expected = set()
            for nb in nbodies:
                expected |= {((mc, "cp", len(v[0])), 1, v) for v in compute_dict["cp"][nb] if len(v[1]) != 1}
                expected |= {((mc, "nocp", len(w[0])), 1, w) for w in compute_dict["nocp"][nb]}
            for nb, calcs in compute_dict["vmfc_levels"].items():
                expected |= {((mc, "vmfc", nb), (-1) ** (nb - len(v[0])), v) for v in calcs}
            if 1 in nbodies:
                expected |= {((mc, "mono", 1), 1, v) for v in compute_dict["nocp"][1] if len(v[1]) == 1}
            every = [
                (real, basis)
                for size in range(1, 5)
                for basis in itertools.combinations(range(1, 5), size)
                for n in range(1, size + 1)
                for real in itertools.combinations(basis, n)
            ]
            ours = {(key, sign, calc) for calc in every for key, sign in contributions(expansion, mc, *calc)}
            assert ours == expected, (mc, rtd)


def test_no_calculation_at_all_lists_qcmanybodys_dummy():
    """CP alone, interaction data, to 1-body: nothing to compute; analyze lists a dummy calculation."""
    core = _core(["cp"], {1: "a"}, False)
    _same(_ours(core, {}, 1, 0), core.analyze({}))


def test_equal_analyses_are_summed_once():
    """The whole expansion is most often its highest truncation: one set of sums serves both."""
    core = _core(["nocp", "cp"], LEVELS[1], True)
    values = _values(core, ("energy", "gradient"), 4)
    expansion = Expansion.of(core)
    labels = list(values)
    sums = batch_sums({4: expansion, "whole": expansion}, labels, [values[label] for label in labels], True)
    assert {analysis for analysis, _ in sums.values} == {4}
    _same(analyzed(expansion, Sums().merge(sums), "whole", order=labels), core.analyze(values))
