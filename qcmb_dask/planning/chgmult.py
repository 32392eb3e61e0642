"""QCElemental's completion of fragment charges and multiplicities, without its exponential memory.

A molecule given without ``fragment_charges`` or ``fragment_multiplicities`` has them filled by
``qcelemental.molparse.chgmult.validate_and_fill_chgmult``: it lists candidate values for the total and
for each fragment, and returns the first combination, in ``itertools.product`` order, that passes its
rules. It builds that product first (2**nfragments tuples: 26 fragments take 18 GB).

:func:`fill` mirrors that function (qcelemental 0.51, ``molparse/chgmult.py`` lines 299-505): the same
candidates in the same order and the same rules. It walks the product depth-first and skips a branch only
when no completion of it can pass, so the first valid leaf it reaches is QCElemental's answer. Whatever a
shortcut fills in must be exactly what QCElemental gives: ``tests/test_chgmult.py`` compares the two on
generated molecules.
"""

from __future__ import annotations

import bisect
import numbers
from collections.abc import Callable, Iterator, Sequence

#: Branches visited before giving up; real inputs need a few per fragment.
MAX_NODES = 1_000_000
#: Reachability of a sum is a pruning test only (the leaf is checked exactly): a loose tolerance is safe.
_TOL = 1e-6


class ChargeMultiplicityError(ValueError):
    """No charges and multiplicities pass QCElemental's rules, or finding them would take too long."""


def _high_spin_sum(mults) -> float:
    return 1 + sum(m - 1 for m in mults)


def _mult_ok(m) -> bool:
    return isinstance(m, numbers.Real) and m >= 1


def _enough_electrons(z, c, m) -> bool:
    return m - 1 <= z - c


def _parity_ok(z, c, m) -> bool:
    return (m % 2) != ((z - c) % 2)


def _int_if_possible(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _unique(values) -> list:
    """``qcelemental.util.unique_everseen``: first occurrences, compared by equality (0 and 0.0 are one)."""
    seen = set()
    out = []
    for value in values:
        if value not in seen:
            seen.add(value)
            out.append(value)
    return out


def _int_range(lo, hi, ascending: bool, same=None) -> list:
    """QCElemental's ``range(lo, hi + 1)`` with its fallback for float multiplicities (one value where
    ``same``, default ``lo == hi``)."""
    try:
        values = list(range(lo, hi + 1))
    except TypeError:
        if (lo == hi) if same is None else same:
            return [hi]
        raise ChargeMultiplicityError(
            f"please give integer multiplicities (fragment_multiplicities and molecular_multiplicity): "
            f"QCElemental cannot complete fractional ones ({lo} .. {hi})."
        ) from None
    return values if ascending else values[::-1]


def fill(
    fragment_electrons: Sequence[Sequence[float]],
    molecular_charge: float | None,
    fragment_charges: Sequence[float | None],
    molecular_multiplicity: float | None,
    fragment_multiplicities: Sequence[float | None],
) -> dict:
    """The charges and multiplicities QCElemental would give, as its ``validate_and_fill_chgmult`` returns them.

    ``fragment_electrons``: per fragment, the neutral electron count of each atom (0 for a ghost atom), in
    fragment order. Raises :class:`ChargeMultiplicityError` where QCElemental raises, or after
    :data:`MAX_NODES` branches.
    """
    nfr = len(fragment_electrons)
    m_given = _int_if_possible(molecular_multiplicity)
    fm_given = [_int_if_possible(m) for m in fragment_multiplicities]
    fc_given = list(fragment_charges)
    if (m_given and m_given < 1.0) or any(m < 1.0 for m in fm_given if m):
        raise ChargeMultiplicityError(f"multiplicities must be positive (molecular {m_given}, fragments {fm_given}).")
    zel = sum(sum(f) for f in fragment_electrons)
    fzel = [sum(f) for f in fragment_electrons]
    ghost = [all(z == 0 for z in f) for f in fragment_electrons]

    # Candidate lists, in QCElemental's order (S1-S7).
    given_charge_sum = sum(filter(None, fc_given))
    exact_c = ([molecular_charge] if molecular_charge is not None else []) + [given_charge_sum]
    missing_charge = (0.0 if molecular_charge is None else molecular_charge) - given_charge_sum
    exact_fc = [[c] if c is not None else [missing_charge, 0.0] for c in fc_given]
    if m_given is None:
        exact_m = _int_range(
            _high_spin_sum([1 if m is None else m for m in fm_given]),
            _high_spin_sum([2 if m is None else m for m in fm_given]),
            ascending=True,
        )
    else:
        exact_m = [m_given]
    if m_given is not None and None in fm_given:
        others = list(fm_given)
        others.remove(None)
        missing_hi = m_given - _high_spin_sum([1 if m is None else m for m in others]) + 1
        missing_lo = m_given - _high_spin_sum([2 if m is None else m for m in others]) + 1
    else:
        missing_hi = missing_lo = 0
    exact_fm = [
        [m]
        if m is not None
        else _int_range(max(missing_lo, 1), missing_hi, ascending=False, same=missing_lo == missing_hi) + [1, 2]
        for m in fm_given
    ]
    uniq_c, uniq_m = _unique(exact_c), _unique(exact_m)
    uniq_fc, uniq_fm = [_unique(f) for f in exact_fc], [_unique(f) for f in exact_fm]
    high_spin_rule = m_given is None or None in fm_given  # R8

    def fragment_ok(i, fc, fm) -> bool:  # R3, R4-i, R5-i, R6-i, R7-i, R9-i
        return (
            _mult_ok(fm)
            and _enough_electrons(fzel[i], fc, fm)
            and _parity_ok(fzel[i], fc, fm)
            and (fc_given[i] is None or fc == fc_given[i])
            and (fm_given[i] is None or fm == fm_given[i])
            and (not ghost[i] or (fc == 0 and fm == 1))
        )

    def total_ok(c, m) -> bool:  # R3, R4, R5, R6, R7
        return (
            _mult_ok(m)
            and _enough_electrons(zel, c, m)
            and _parity_ok(zel, c, m)
            and (molecular_charge is None or c == molecular_charge)
            and (m_given is None or m == m_given)
        )

    def leaf_ok(c, fc, m, fm) -> bool:  # every rule, exactly as QCElemental evaluates it
        return (
            c == sum(fc)
            and total_ok(c, m)
            and all(fragment_ok(i, fc[i], fm[i]) for i in range(nfr))
            and (not high_spin_rule or m == _high_spin_sum(fm))
        )

    nodes = 0

    def visit() -> None:
        nonlocal nodes
        nodes += 1
        if nodes > MAX_NODES:
            raise ChargeMultiplicityError(
                f"completing the charges and multiplicities of {nfr} fragments takes too long: give "
                "fragment_charges and fragment_multiplicities (one value per fragment) in the molecule."
            )

    # Per fragment, the charges that some multiplicity can go with; their reachable sums, from the back.
    usable_fc = [[fc for fc in uniq_fc[i] if any(fragment_ok(i, fc, fm) for fm in uniq_fm[i])] for i in range(nfr)]
    charge_sums = _suffix_sums(usable_fc)

    def walk_charges(c):
        return _walk(usable_fc, lambda i, before, fc: _reachable(charge_sums[i + 1], c - before - fc), visit)

    def walk_multiplicities(m, allowed, sums):
        """Walks the multiplicities minus one (what the high-spin sum adds up), and gives them back."""
        spins = [[fm - 1 for fm in a] for a in allowed]
        if high_spin_rule:
            keep = lambda i, before, spin: _reachable(sums[i + 1], (m - 1) - before - spin)  # noqa: E731
        else:
            keep = lambda i, before, spin: True  # noqa: E731
        for chosen in _walk(spins, keep, visit):
            yield tuple(allowed[i][spins[i].index(spin)] for i, spin in enumerate(chosen))

    for c in uniq_c:
        if molecular_charge is not None and c != molecular_charge:
            continue
        for fc in walk_charges(c):
            allowed = [[fm for fm in uniq_fm[i] if fragment_ok(i, fc[i], fm)] for i in range(nfr)]
            # Spins (multiplicity - 1) are >= 0: sums above the largest candidate's are of no use.
            spin_sums = _suffix_sums([[fm - 1 for fm in a] for a in allowed], cap=max(uniq_m) - 1 + _TOL)
            for m in uniq_m:
                visit()
                if not total_ok(c, m) or (high_spin_rule and not _reachable(spin_sums[0], m - 1)):
                    continue
                for fm in walk_multiplicities(m, allowed, spin_sums):
                    if leaf_ok(c, fc, m, fm):
                        return {
                            "molecular_charge": float(c),
                            "fragment_charges": [float(f) for f in fc],
                            "molecular_multiplicity": m,
                            "fragment_multiplicities": list(fm),
                        }
    raise ChargeMultiplicityError(
        f"inconsistent or unspecified chg/mult: no charges and multiplicities fit molecular_charge="
        f"{molecular_charge}, fragment_charges={list(fragment_charges)}, molecular_multiplicity="
        f"{molecular_multiplicity}, fragment_multiplicities={list(fragment_multiplicities)} and the electron "
        "counts of the fragments (each fragment's multiplicity must match its electron count's parity)."
    )


def _walk(choices: Sequence[Sequence[float]], keep: Callable[[int, float, float], bool], visit) -> Iterator[tuple]:
    """Every tuple of ``itertools.product(*choices)``, in its order, whose every prefix ``keep`` accepts.

    ``keep(i, before, value)``: may ``value`` follow the first i values, whose sum is ``before``? Iterative:
    thousands of fragments are deeper than Python's recursion limit.
    """
    n = len(choices)
    chosen: list[float] = []
    before = [0.0] * (n + 1)  # before[i]: sum of chosen[:i]
    position = [0] * (n + 1)  # next candidate to try at each depth
    while True:
        i = len(chosen)
        if i == n:
            yield tuple(chosen)
            position[i] = 0
            if not chosen:
                return
            chosen.pop()
            continue
        if position[i] >= len(choices[i]):
            position[i] = 0
            if not chosen:
                return
            chosen.pop()
            continue
        value = choices[i][position[i]]
        position[i] += 1
        visit()
        if keep(i, before[i], value):
            chosen.append(value)
            before[i + 1] = before[i] + value


def _suffix_sums(choices: Sequence[Sequence[float]], cap: float = float("inf")) -> list[list[float]]:
    """``sums[i]``: every total up to ``cap`` that fragments i.. can reach (sorted), one value from each list."""
    sums: list[list[float]] = [[0.0] for _ in range(len(choices) + 1)]
    for i in range(len(choices) - 1, -1, -1):
        sums[i] = sorted({round(s + v, 9) for s in sums[i + 1] for v in choices[i] if s + v <= cap})
    return sums


def _reachable(sorted_sums: list[float], target: float) -> bool:
    at = bisect.bisect_left(sorted_sums, target - _TOL)
    return at < len(sorted_sums) and sorted_sums[at] <= target + _TOL
