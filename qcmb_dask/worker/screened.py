"""The assembly of a distance-screened expansion: the sum of the kept k-mers' many-body increments.

QCManyBody's analysis sums every k-mer's increment and needs every k-mer's calculations. A screened run
(:mod:`qcmb_dask.planning.screening`) has only the kept ones, a set closed under taking subsets. This module
completes the results with values that make every dropped k-mer's increment exactly zero, after which
QCManyBody's own analysis (unchanged, every property, every output field) gives the sum of the kept increments:

- nocp: a k-mer's increment is ``dE(S) = E(S) - sum of dE(U) over the proper subsets U of S``. A dropped S gets
  ``E(S) = sum of dE(U)`` over its proper subsets (in increasing size, so that a dropped subset's zero increment is
  already known); the increments of kept k-mers involve kept k-mers only.
- vmfc: ``dE(S) = sum over T in S of (-1)^(|S|-|T|) E(T in the basis of S)``, and a calculation in the basis of S
  appears in no other increment. A dropped S's own calculation (T = S, shared with nocp) has the value above, the
  sub-cluster of S without its last fragment (sign -1) the same value, every other one zero: they cancel.

Linear in the property: energies, gradients and Hessians alike (gradients and Hessians summed at full size and cut
back to the k-mer's atoms). Runs where the analysis runs, on a worker; pure given QCManyBody's core.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from qcmanybody.utils import labeler

from qcmb_dask.qcmanybody_adapter import unique_calculations


def complete(core, results: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[tuple, float]]:
    """``results`` (label -> {energy, gradient, hessian}) with every calculation ``core`` expects that a dropped
    k-mer needs, so that each dropped k-mer's increment is zero, in QCManyBody's order; and the kept k-mers'
    energy increments for the return BSSE treatment (k-mer -> Eh), from which the dropped energy is estimated."""
    completed = dict(results)
    (mc,) = {m for m, _, _ in unique_calculations(core)}
    properties = sorted({name for values in results.values() for name in values})

    def kept(kmer: tuple[int, ...]) -> bool:
        return labeler(mc, kmer, kmer) in results

    expected = sorted(unique_calculations(core), key=lambda calc: (len(calc[2]), len(calc[1])))
    increments = {prop: {} for prop in properties}
    for _, real, basis in expected:  # k-mers in their own basis, smallest first
        if real != basis:
            continue
        label = labeler(mc, real, basis)
        for prop in properties:
            subsets = sum(
                (increments[prop][sub] for sub in _proper_subsets(basis) if sub in increments[prop]),
                start=_zero_full(core, prop),
            )
            if kept(basis):
                increments[prop][basis] = _full(core, prop, results[label][prop], basis) - subsets
            else:
                increments[prop][basis] = _zero_full(core, prop)
                completed.setdefault(label, {})[prop] = _cut(core, prop, subsets, basis)
    for _, real, basis in expected:  # vmfc's sub-clusters in the basis of a dropped k-mer
        if real != basis and not kept(basis):
            own = completed[labeler(mc, basis, basis)]
            cancels = real == basis[:-1]
            completed[labeler(mc, real, basis)] = {
                prop: own[prop] if cancels else _cut(core, prop, _zero_full(core, prop), basis) for prop in properties
            }
    ordered = {label: completed[label] for label in (labeler(mc, r, b) for _, r, b in unique_calculations(core))}
    return ordered, _energy_increments(core, mc, results, increments.get("energy", {}))


def _energy_increments(core, mc: str, results: dict, nocp: dict[tuple, float]) -> dict[tuple, float]:
    """The kept k-mers' energy increments (k >= 2) of the return BSSE treatment."""
    if core.return_bsse_type.value == "nocp":
        return {
            kmer: float(value) for kmer, value in nocp.items() if len(kmer) > 1 and labeler(mc, kmer, kmer) in results
        }
    vmfc = {}
    for kmer in {basis for _, _, basis in unique_calculations(core) if len(basis) > 1}:
        if labeler(mc, kmer, kmer) not in results:
            continue
        vmfc[kmer] = float(
            sum(
                (-1) ** (len(kmer) - size) * results[labeler(mc, real, kmer)]["energy"]
                for size in range(1, len(kmer) + 1)
                for real in itertools.combinations(kmer, size)
            )
        )
    return vmfc


def _proper_subsets(kmer: tuple[int, ...]):
    for size in range(1, len(kmer)):
        yield from itertools.combinations(kmer, size)


def _zero_full(core, prop: str):
    natom = sum(core.fragment_size_dict.values())
    if prop == "gradient":
        return np.zeros((natom, 3))
    if prop == "hessian":
        return np.zeros((3 * natom, 3 * natom))
    return 0.0


def _full(core, prop: str, value, basis: tuple[int, ...]):
    if prop == "gradient":
        return core.resize_gradient(np.asarray(value), basis)
    if prop == "hessian":
        return core.resize_hessian(np.asarray(value), basis)
    return value


def _cut(core, prop: str, value, basis: tuple[int, ...]):
    if prop == "gradient":
        return core.resize_gradient(value, basis, reverse=True)
    if prop == "hessian":
        return core.resize_hessian(value, basis, reverse=True)
    return value


#: the share of the kept k-mers of an order, most distant first, whose increments the dropped-energy fit reads
TAIL_SHARE = 0.5
#: distance shells of that tail the fit is made from
SHELLS = 5


def report(screening: dict[str, Any], increments: dict[tuple, float]) -> dict[str, Any]:
    """``extras["qcmb_dask"]["screening"]``: the cutoffs, kept and dropped k-mers per order, and per screened
    order an estimate of the energy of the dropped k-mers, labelled as one.

    The estimate: the kept k-mers of the order in the most distant half (R: the largest closest-atom distance
    between two fragments of the k-mer, in Angstrom) are put in distance shells; the mean increment per k-mer of
    each shell (signed: near k-mers of opposite sign cancel) is fitted with ``A R^-p``, and that is summed over the
    dropped k-mers of the order. Rough where increments change sign with distance or few k-mers are kept."""
    layout = shell_layout(screening)
    sums = {
        (order, shell): sum(increments.get(kmer, 0.0) for kmer in members)
        for order, how in layout.items()
        if "shells" in how
        for shell, members in enumerate(how["members"])
    }
    return report_from_shells(screening, layout, sums)


def shell_layout(screening: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Per screened order, the distance shells of its kept k-mers that the estimate fits (members, mean R), or why
    there are none: what both analyses (every result at once, or a tree of sums) read the increments by."""
    distances = np.asarray(screening["matrix"])
    layout = {}
    for order_key in screening["cutoffs"]:
        order = int(order_key)
        kept = [tuple(kmer) for kmer in screening["kept_kmers"].get(order, [])]
        if len(kept) < 2 * SHELLS:
            layout[order] = {"why": f"fewer than {2 * SHELLS} kept {order}-mers to fit"}
            continue
        sizes = np.array([_size(distances, kmer) for kmer in kept])
        start = np.quantile(sizes, 1 - TAIL_SHARE)
        tail = np.flatnonzero(sizes >= start)
        shells = np.array_split(tail[np.argsort(sizes[tail], kind="stable")], SHELLS)
        layout[order] = {
            "shells": [float(sizes[shell].mean()) for shell in shells],
            "members": [[kept[i] for i in shell] for shell in shells],
            "start": float(start),
            "tail": len(tail),
        }
    return layout


def report_from_shells(screening: dict[str, Any], layout: dict, sums: dict[tuple[int, int], float]) -> dict[str, Any]:
    """The report of :func:`report` from each shell's summed increment, ``sums[(order, shell)]`` (Eh)."""
    distances = np.asarray(screening["matrix"])
    estimates = {}
    for order_key in screening["cutoffs"]:
        order = int(order_key)
        estimates[order_key] = _estimate(order, screening, layout[order], sums, distances)
    summary = {k: v for k, v in screening.items() if k not in ("kept_kmers", "matrix")}
    return {**summary, "dropped_energy_estimate": estimates}


def _estimate(order: int, screening: dict, how: dict, sums: dict, distances: np.ndarray) -> dict[str, Any]:
    nfrag = distances.shape[0]
    kept_set = {tuple(kmer) for kmer in screening["kept_kmers"].get(order, [])}
    dropped = [kmer for kmer in itertools.combinations(range(1, nfrag + 1), order) if kmer not in kept_set]
    if not dropped:
        return {"hartree": 0.0, "is_estimate": True, "how": f"no {order}-mer was dropped"}
    if "shells" not in how:
        return {"hartree": None, "why": how["why"]}
    radius = np.array(how["shells"])
    mean = np.array([sums.get((order, shell), 0.0) / len(members) for shell, members in enumerate(how["members"])])
    if np.any(mean == 0):
        return {"hartree": None, "why": "a distance shell of kept k-mers sums to zero"}
    slope, intercept = np.polyfit(np.log(radius), np.log(np.abs(mean)), 1)
    if slope >= 0:  # extrapolated to the far dropped k-mers, a growing fit gives any number at all
        return {
            "hartree": None,
            "why": f"the kept {order}-mers' increments do not decay with distance (fitted R^{slope:+.2f}): no estimate",
        }
    sign = 1.0 if mean.sum() >= 0 else -1.0
    dropped_sizes = np.array([_size(distances, kmer) for kmer in dropped])
    total = float(sign * np.exp(intercept) * np.sum(dropped_sizes**slope))
    return {
        "hartree": total,
        "is_estimate": True,
        "how": f"mean increment per {order}-mer ~ R^{slope:.2f}, fitted to {SHELLS} distance shells of the "
        f"{how['tail']} kept {order}-mers with R >= {how['start']:.2f} A, summed over {len(dropped):,} dropped "
        f"{order}-mers",
    }


def tree_weights(screening: dict[str, Any], nfragments: int, max_nbody: int, mc: str, vmfc: bool) -> dict:
    """label -> what the calculation adds to the sums of the analysis as a tree (:mod:`qcmb_dask.worker.sums`)
    where that differs from an unscreened expansion's, for the calculations that :func:`complete` would otherwise
    make the analysis read every result for:

    - ``"nocp"``: {n: c}. A k-mer's completed energy is the sum of its kept subsets' increments, so QCManyBody's
      n-body sum over every n-mer is ``sum over kept U, |U| <= n, of dE(U) C(nfr - |U|, n - |U|)``; written in the
      kept k-mers' own energies E(T), T enters it with ``c_n(T) = sum over j of (-1)^(j - |T|) C(nfr - j, n - j)
      N_j(T)``, N_j(T) the kept j-mers containing T. (VMFC's sums need nothing: a dropped k-mer's stand-ins
      cancel, and its calculations do not exist.)
    - ``"shell"``: {(order, shell): c}: its share of the summed energy increments of a distance shell of kept
      k-mers, from which the report's estimate of the dropped energy is fitted (:func:`report`)."""
    from math import comb

    from qcmanybody.utils import labeler

    kept = {tuple(kmer) for kmers in screening["kept_kmers"].values() for kmer in kmers}
    above: dict[tuple, dict[int, int]] = {}
    for kmer in kept:
        for size in range(1, len(kmer) + 1):
            for sub in itertools.combinations(kmer, size):
                counts = above.setdefault(sub, {})
                counts[len(kmer)] = counts.get(len(kmer), 0) + 1
    weights: dict[str, dict] = {}
    for sub, counts in above.items():
        t = len(sub)
        coefficients = {
            n: sum((-1) ** (j - t) * comb(nfragments - j, n - j) * counts.get(j, 0) for j in range(t, n + 1))
            for n in range(t, max_nbody + 1)
        }
        if any(c != (n == t) for n, c in coefficients.items()):
            weights.setdefault(labeler(mc, sub, sub), {})["nocp"] = coefficients
    for order, how in shell_layout(screening).items():
        for shell, members in enumerate(how.get("members", [])):
            for kmer in members:
                for size in range(1, len(kmer) + 1):
                    for sub in itertools.combinations(kmer, size):
                        label = labeler(mc, sub, kmer) if vmfc else labeler(mc, sub, sub)
                        shells = weights.setdefault(label, {}).setdefault("shell", {})
                        shells[order, shell] = shells.get((order, shell), 0) + (-1) ** (len(kmer) - size)
    return weights


def _size(distances: np.ndarray, kmer: tuple[int, ...]) -> float:
    index = [i - 1 for i in kmer]
    return float(distances[np.ix_(index, index)].max())
