"""The many-body analysis as sums of fragment results, so that it runs as a tree and no process holds them all.

QCManyBody's analysis (``ManyBodyCore.analyze``) reads the fragment results only through sums over sets of
calculations (``qcmanybody.utils.sum_cluster_data``), per model chemistry and property:

- ``cp``: the n-fragment calculations in the full basis, per n;
- ``nocp``: the n-fragment calculations in their own basis, per n;
- ``vmfc``: the calculations in an n-fragment basis, signed (-1)^(n - fragments computed), per n;
- ``mono``: the monomers in their own basis (the CP total energy);
- ``super``: the supersystem calculation of a supersystem level.

Everything after these few sums is arithmetic on a handful of numbers (or full-size gradients and Hessians). So a
batch of fragment results reduces to partial sums (:func:`batch_sums`), partial sums add (:func:`merge`), and the
analysis of the totals (:func:`analyzed`) gives what ``analyze`` gives. Energies are summed in double-double
precision (a sum and its exactly computed rounding error): a tree of partial sums rounds no worse than
QCManyBody's one ``math.fsum``.

One :class:`Expansion` per analysis (the truncation at each level, and the whole expansion) says which sums a
calculation enters: :func:`contributions` mirrors ``qcmanybody.builder.build_nbody_compute_list`` and the grouping
of ``ManyBodyCore._assemble_nbody_components`` (qcmanybody 0.8.0, core.py lines 278-422); :func:`analyzed`
mirrors ``_assemble_nbody_components``, ``_analyze`` and ``analyze`` (core.py lines 278-640) on the sums.
``tests/test_sums.py`` checks the first against QCManyBody's own compute lists, and the equality tests the second.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from qcmanybody.models.v2 import BsseEnum
from qcmanybody.utils import (
    collect_vars,
    copy_value,
    delabeler,
    modelchem_labels,
    print_nbody_energy,
    resize_gradient,
    resize_hessian,
)

#: the properties the analysis sums
PROPERTIES = ("energy", "gradient", "hessian")
#: the whole expansion's analysis, beside the level truncations (keyed by their n-body level)
WHOLE = "whole"


@dataclass(frozen=True)
class Expansion:
    """What one analysis needs of QCManyBody's core: its BSSE treatments, levels and sizes (small, picklable)."""

    bsse_type: tuple[str, ...]
    return_bsse_type: str
    nfragments: int
    fragment_sizes: tuple[int, ...]
    #: (model chemistry, its n-body levels or ("supersystem",)), in QCManyBody's order
    nbodies: tuple[tuple[str, tuple], ...]
    return_total_data: bool
    supersystem_ie_only: bool
    max_nbody: int
    embedded: bool
    supersystem_mc: str | None = None

    @classmethod
    def of(cls, core) -> Expansion:
        """The expansion a QCManyBody ``ManyBodyCore`` analyzes."""
        return cls(
            bsse_type=tuple(BsseEnum(bt).value for bt in core.bsse_type),
            return_bsse_type=BsseEnum(core.return_bsse_type).value,
            nfragments=core.nfragments,
            fragment_sizes=tuple(core.fragment_size_dict[i] for i in range(1, core.nfragments + 1)),
            nbodies=tuple((mc, tuple(nbs)) for mc, nbs in core.nbodies_per_mc_level.items()),
            return_total_data=bool(core.return_total_data),
            supersystem_ie_only=bool(core.supersystem_ie_only),
            max_nbody=int(core.max_nbody),
            embedded=bool(core.embedding_charges),
            supersystem_mc=core.levels.get("supersystem") if core.has_supersystem else None,
        )

    @property
    def natom(self) -> int:
        return sum(self.fragment_sizes)

    def zero(self, prop: str):
        if prop == "gradient":
            return np.zeros((self.natom, 3))
        if prop == "hessian":
            return np.zeros((3 * self.natom, 3 * self.natom))
        return 0.0

    def full_size(self, prop: str, value, basis: tuple[int, ...]):
        """A fragment's gradient or Hessian placed in the whole molecule's atoms, as ``analyze`` does first."""
        if prop not in ("gradient", "hessian"):
            return value
        sizes, slices = self._layout
        resize = resize_gradient if prop == "gradient" else resize_hessian
        return resize(np.asarray(value), basis, sizes, slices)

    @functools.cached_property
    def _layout(self) -> tuple[dict, dict]:
        """QCManyBody's fragment sizes and atom slices (``ManyBodyCore.fragment_size_dict``, ``..._slice_dict``)."""
        sizes = {i + 1: n for i, n in enumerate(self.fragment_sizes)}
        starts = np.cumsum((0, *self.fragment_sizes))
        slices = {i + 1: slice(int(starts[i]), int(starts[i + 1])) for i in range(self.nfragments)}
        return sizes, slices


Key = tuple  # (model chemistry, kind, n)


def contributions(
    expansion: Expansion, mc: str, real: tuple[int, ...], basis: tuple[int, ...], weights: dict | None = None
) -> list:
    """[(key, coefficient)]: the sums of ``expansion``'s analysis that the calculation (mc, real, basis) enters.
    ``weights["nocp"]``: {n: coefficient} in place of the one n-body sum of its size, for a k-mer of a screened
    expansion (:func:`qcmb_dask.worker.screened.tree_weights`)."""
    nbodies = dict(expansion.nbodies).get(mc)
    if nbodies is None:
        return []
    nfr, size = expansion.nfragments, len(real)
    own_basis = real == basis
    out: list = []
    if nbodies == ("supersystem",):
        # _assemble_nbody_components on a supersystem level: levels 1..max_nbody, nocp only (builder, lines 141-152)
        if own_basis and size <= expansion.max_nbody:
            out.append(((mc, "nocp", size), 1))
        if own_basis and size == 1:
            out.append(((mc, "mono", 1), 1))
        if own_basis and size == nfr:
            out.append(((mc, "super", 0), 1))
        return out
    levels = [nb for nb in nbodies if nb != "supersystem"]
    ssio = expansion.supersystem_ie_only
    bsse = expansion.bsse_type
    full = len(basis) == nfr
    if "cp" in bsse and full and len(basis) != 1:
        if ssio:
            takes = nfr in levels and size in (1, nfr)
        else:
            top = max((nb for nb in levels if nb > 1), default=0)
            takes = size <= top
        if takes:
            out.append(((mc, "cp", size), 1))
    if own_basis:
        if "nocp" in bsse and not ssio:
            in_nocp = size <= max(levels)
        elif "nocp" in bsse:
            in_nocp = nfr in levels and size in (1, nfr)
        else:
            in_nocp = False
        monomer_total = expansion.return_total_data and 1 in levels and size == 1
        if (in_nocp or monomer_total) and weights and "nocp" in weights:
            top = max(levels)
            out.extend(((mc, "nocp", n), c) for n, c in weights["nocp"].items() if n <= top and c)
        elif in_nocp or monomer_total:
            out.append(((mc, "nocp", size), 1))
        if size == 1 and 1 in levels and (("nocp" in bsse and not ssio) or monomer_total):
            out.append(((mc, "mono", 1), 1))
    if "vmfc" in bsse and len(basis) in levels:
        out.append(((mc, "vmfc", len(basis)), (-1) ** (len(basis) - size)))
    return out


@dataclass
class Sums:
    """Partial sums of fragment results for one or more analyses: (analysis, key) -> property -> value."""

    values: dict[tuple, dict[str, Any]] = field(default_factory=dict)
    #: analysis -> how many calculations entered its sums (QCManyBody's ``calcinfo_nmbe``)
    counted: dict[Any, int] = field(default_factory=dict)
    #: label -> {"calcinfo_natom", "return_energy", ...} where the run keeps each calculation's properties
    per_calculation: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: analysis -> the one whose sums it shares (the whole expansion is most often its highest truncation)
    aliases: dict[Any, Any] = field(default_factory=dict)

    def add(self, analysis, key: Key, prop: str, value) -> None:
        slot = self.values.setdefault((analysis, key), {})
        if prop == "energy":
            value = float(value)
            slot[prop] = _two_sum(slot.get(prop, (0.0, 0.0)), (value, 0.0))
        elif prop in slot:
            slot[prop] += value  # in place: a Hessian's full-size array is not made again per calculation
        else:
            slot[prop] = np.array(value, dtype=float)

    def merge(self, other: Sums) -> Sums:
        for (analysis, key), props in other.values.items():
            slot = self.values.setdefault((analysis, key), {})
            for prop, value in props.items():
                if prop == "energy":
                    slot[prop] = _two_sum(slot.get(prop, (0.0, 0.0)), value)
                elif prop in slot:
                    slot[prop] += value
                else:
                    slot[prop] = np.array(value, dtype=float)  # a copy: the other's arrays stay its own
        for analysis, count in other.counted.items():
            self.counted[analysis] = self.counted.get(analysis, 0) + count
        self.per_calculation.update(other.per_calculation)
        self.aliases.update(other.aliases)
        return self

    def total(self, analysis, key: Key, prop: str, zero):
        analysis = self.aliases.get(analysis, analysis)
        value = self.values.get((analysis, key), {}).get(prop)
        if value is None:
            return copy_value(zero)
        return math.fsum(value) if prop == "energy" else value.copy()

    def properties(self, analysis) -> set[str]:
        analysis = self.aliases.get(analysis, analysis)
        return {prop for (a, _), props in self.values.items() if a == analysis for prop in props}


def _two_sum(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """(hi, lo) + (hi, lo): the rounded sum and its exact rounding error, by ``math.fsum``."""
    parts = [a[0], a[1], b[0], b[1]]
    hi = math.fsum(parts)
    return hi, math.fsum([*parts, -hi])


def batch_sums(
    analyses: dict[Any, Expansion],
    labels: Sequence[str],
    properties: Sequence[dict[str, Any]],
    keep_each: bool = False,
    weights: dict[str, dict] | None = None,
) -> Sums:
    """The partial sums of one batch of results (``properties[i]``: {energy, gradient, hessian} of the calculation
    QCManyBody labels ``labels[i]``) for every analysis of ``analyses``; ``keep_each``: each calculation's full-size
    properties too, as ``analyze`` lists them (``cluster_properties``). ``weights``: label -> what a screened
    expansion's calculation adds instead (:func:`qcmb_dask.worker.screened.tree_weights`); its ``"shell"``
    coefficients go to the whole expansion's energy sums ``(mc, "shell", (order, shell))``."""
    sums = Sums()
    distinct: dict[Any, Expansion] = {}
    for analysis, expansion in analyses.items():  # equal expansions are summed once
        same = next((other for other, seen in distinct.items() if seen == expansion), None)
        if same is None:
            distinct[analysis] = expansion
        else:
            sums.aliases[analysis] = same
    whole = sums.aliases.get(WHOLE, WHOLE)
    for label, props in zip(labels, properties):
        mc, real, basis = delabeler(label)
        weight = (weights or {}).get(label)
        full = None
        for analysis, expansion in distinct.items():
            entered = contributions(expansion, mc, tuple(real), tuple(basis), weight)
            if analysis == whole and weight and "shell" in weight and "energy" in props:
                for shell, c in weight["shell"].items():
                    sums.add(analysis, (mc, "shell", shell), "energy", c * float(props["energy"]))
            if not entered:
                continue
            if full is None:
                full = {p: expansion.full_size(p, v, tuple(basis)) for p, v in props.items() if p in PROPERTIES}
            sums.counted[analysis] = sums.counted.get(analysis, 0) + 1
            for key, coefficient in entered:
                for prop, value in full.items():
                    sums.add(analysis, key, prop, value if coefficient == 1 else coefficient * value)
        if keep_each:
            expansion = next(iter(distinct.values()))
            full = full or {p: expansion.full_size(p, v, tuple(basis)) for p, v in props.items() if p in PROPERTIES}
            each = {"calcinfo_natom": expansion.natom}
            each.update({f"return_{prop}": value for prop, value in full.items()})
            sums.per_calculation[label] = each
    return sums


def analyzed(expansion: Expansion, sums: Sums, analysis, order: Sequence[str] = ()) -> dict[str, Any]:
    """What ``ManyBodyCore.analyze`` returns for the calculations summed in ``sums`` under ``analysis``:
    ``results``, ``energy_body_dict`` (keyed ``"2cp"``), ``ret_energy`` (and ``ret_gradient``, ``ret_hessian``),
    the property body dicts, ``stdout`` and ``component_properties`` (the calculations kept one by one, in
    ``order``: QCManyBody's, the order of the results it is given)."""
    available = {"energy"} | sums.properties(analysis)
    all_results: dict[str, Any] = {}
    for prop in (p for p in PROPERTIES if p in available):
        all_results.update(_analyze(expansion, sums, analysis, prop))
    nbodies_per_mc = {mc: list(nbs) for mc, nbs in expansion.nbodies}
    stdout = ""
    for bt in expansion.bsse_type:
        enum = BsseEnum(bt)
        stdout += print_nbody_energy(
            all_results["energy_body_dict"][bt],
            f"{enum.formal()} ({enum.abbr()})",
            expansion.nfragments,
            modelchem_labels(nbodies_per_mc, presorted=True),
            expansion.embedded,
            expansion.supersystem_ie_only,
            expansion.max_nbody if expansion.supersystem_mc else None,
        )
    results: dict[str, Any] = {}
    for prop in available:
        for bt in expansion.bsse_type:
            results.update(
                collect_vars(
                    BsseEnum(bt),
                    prop,
                    all_results[f"{prop}_body_dict"][bt],
                    expansion.max_nbody,
                    expansion.embedded,
                    expansion.supersystem_ie_only,
                    expansion.supersystem_mc is not None,
                )
            )
    all_results["results"] = results
    each = sums.per_calculation
    all_results["component_properties"] = {label: each[label] for label in order if label in each}
    if not sums.values:  # analyze's Note B: no calculation at all (CP alone, interaction data, 1-body) lists a dummy
        all_results["component_properties"] = {
            '["dummy", [1000], [1000]]': {"calcinfo_natom": expansion.natom, "return_energy": 0.0}
        }
    ebd = all_results["energy_body_dict"]
    all_results["energy_body_dict"] = {str(k) + bt: v for bt in ebd for k, v in ebd[bt].items()}
    all_results["stdout"] = stdout
    return all_results


def _analyze(expansion: Expansion, sums: Sums, analysis, prop: str) -> dict[str, Any]:
    """Mirrors ``ManyBodyCore._analyze`` (core.py lines 424-524) on sums."""
    zero = expansion.zero(prop)
    result = copy_value(zero)
    contribution: dict[str, dict] = {bt: {} for bt in expansion.bsse_type}
    body: dict[str, dict] = {bt: {} for bt in expansion.bsse_type}
    ordered = [(mc, list(nbs)) for mc, nbs in expansion.nbodies if list(nbs) != ["supersystem"]]
    ordered = sorted(ordered, reverse=True, key=lambda x: x[1])
    assembled = {}
    for mc, nbody_list in ordered:
        assembled[mc] = _assemble(expansion, sums, analysis, prop, mc, nbody_list)
        for n in nbody_list[::-1]:
            per_bsse = {bt: copy_value(zero) for bt in expansion.bsse_type}
            for m in range(n - 1, n + 1):
                if m == 0:
                    continue
                sign = (-1) ** (1 - m // n)
                for bt in expansion.bsse_type:
                    per_bsse[bt] += sign * assembled[mc][f"{bt}_{prop}_body_dict"][m]
            result += per_bsse[expansion.return_bsse_type]
            for bt in expansion.bsse_type:
                contribution[bt][n] = per_bsse[bt]
    if expansion.supersystem_mc is not None:
        mc = expansion.supersystem_mc
        supersystem = _assemble(expansion, sums, analysis, prop, mc, ["supersystem"])
        whole = sums.total(analysis, (mc, "super", 0), prop, zero)
        result += whole - supersystem[f"{prop}_body_dict"][expansion.max_nbody]
        for bt in expansion.bsse_type:
            contribution[bt][expansion.nfragments] = whole - supersystem[f"{prop}_body_dict"][expansion.max_nbody]
    for bt in expansion.bsse_type:
        for n in contribution[bt]:
            body[bt][n] = sum([contribution[bt][i] for i in range(1, n + 1) if i in contribution[bt]])
    if not expansion.return_total_data:
        result -= body[expansion.return_bsse_type][1]
    return {f"ret_{prop}": result, f"{prop}_body_dict": body}


def _assemble(expansion: Expansion, sums: Sums, analysis, prop: str, mc: str, nbodies: list) -> dict[str, Any]:
    """Mirrors ``ManyBodyCore._assemble_nbody_components`` (core.py lines 278-422) on sums."""
    bsse_type, return_bsse_type = expansion.bsse_type, expansion.return_bsse_type
    if "supersystem" in nbodies:
        nbodies = list(range(1, expansion.max_nbody + 1))
        bsse_type, return_bsse_type = ("nocp",), "nocp"
    top, nfr = nbodies[-1], expansion.nfragments
    zero = expansion.zero(prop)

    def total(kind: str, n: int):
        return sums.total(analysis, (mc, kind, n), prop, zero)

    levels = range(1, top + 1)
    cp_by_level = {n: total("cp", n) for n in levels}
    nocp_by_level = {n: total("nocp", n) for n in levels}
    vmfc_by_level = {n: total("vmfc", n) if n in nbodies else copy_value(zero) for n in levels}
    monomer_sum = total("mono", 1) if 1 in nbodies else copy_value(zero)
    cp_body = {n: copy_value(zero) for n in levels}
    nocp_body = {n: copy_value(zero) for n in levels}
    vmfc_body = {n: copy_value(zero) for n in levels}
    if "cp" in bsse_type:
        bsse = None
        for nb in levels:
            if nb == nfr:
                cp_body[nb] = cp_by_level[nb] - bsse
                continue
            for k in range(1, nb + 1):
                take_nk = math.comb(nfr - k - 1, nb - k)
                sign = (-1) ** (nb - k)
                cp_body[nb] += take_nk * sign * cp_by_level[k]
            if nb == 1:
                bsse = cp_body[nb] - monomer_sum
                cp_body[nb] = copy_value(monomer_sum)
            else:
                cp_body[nb] -= bsse
    if "nocp" in bsse_type:
        for nb in levels:
            if nb == nfr:
                nocp_body[nb] = nocp_by_level[nb]
                continue
            for k in range(1, nb + 1):
                take_nk = math.comb(nfr - k - 1, nb - k)
                sign = (-1) ** (nb - k)
                nocp_body[nb] += take_nk * sign * nocp_by_level[k]
    if "vmfc" in bsse_type:
        for nb in nbodies:
            for k in range(1, nb + 1):
                vmfc_body[nb] += vmfc_by_level[k]
    out = {
        f"cp_{prop}_body_dict": cp_body,
        f"nocp_{prop}_body_dict": nocp_body,
        f"vmfc_{prop}_body_dict": vmfc_body,
    }
    out[f"{prop}_body_dict"] = out[f"{return_bsse_type}_{prop}_body_dict"]
    out[f"ret_{prop}"] = copy_value(out[f"{prop}_body_dict"][max(nbodies)])
    if not expansion.return_total_data:
        out[f"ret_{prop}"] -= out[f"{prop}_body_dict"][1]
    return out
