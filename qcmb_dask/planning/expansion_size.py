"""How many calculations an expansion needs, counted with binomials before any is enumerated.

An input of 64 fragments to 64-body asks for 2**64 calculations: enumerating them would never end, so the
plan counts first and refuses above a limit the user can raise. The count follows QCManyBody's
``build_nbody_compute_list`` (qcmanybody 0.8, ``builder.py``) set by set; sets that overlap between BSSE
treatments are counted once each, so the count is an upper bound, within a factor of 2 of the true one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from math import comb

#: ``qcmb_dask.max-calculations``: a plan that would need more is refused (raise it to run a larger one).
DEFAULT_MAX_CALCULATIONS = 1_000_000


def count(
    nfragments: int,
    bsse_type: Sequence[str],
    nbodies_per_mc: dict[str, list[int | str]],
    *,
    max_nbody: int,
    return_total_data: bool,
    supersystem_ie_only: bool,
) -> dict[str, dict[int, int]]:
    """Model chemistry -> n-body order -> at most this many calculations of that order."""
    n = nfragments
    out: dict[str, dict[int, int]] = {}
    for mc, nbodies in nbodies_per_mc.items():
        orders = [nb for nb in nbodies if nb != "supersystem"]
        per_order: dict[int, int] = {}
        add = functools.partial(_add, per_order)

        top = max(orders, default=0)
        for bsse in bsse_type:
            if bsse in ("cp", "nocp") and supersystem_ie_only:
                add(1, n)
                add(n, 1)
            elif bsse == "nocp" or (bsse == "cp" and top > 1):
                for sub in range(1, top + 1):
                    add(sub, comb(n, sub))
            elif bsse == "vmfc":
                for nb in orders:  # every subset of every nb-mer, in the nb-mer's basis
                    for sub in range(1, nb + 1):
                        add(sub, comb(n, nb) * comb(nb, sub))
        if return_total_data and 1 in orders:
            add(1, n)
        if "supersystem" in nbodies:
            for sub in range(1, max_nbody + 1):
                add(sub, comb(n, sub))
            add(n, 1)
        out[mc] = dict(sorted(per_order.items()))
    return out


def _add(per_order: dict[int, int], order: int, number: int) -> None:
    per_order[order] = per_order.get(order, 0) + number


def check(
    counts: dict[str, dict[int, int]],
    limit: int | None,
    seconds_per: Callable[[str, int], float],
) -> None:
    """Refuse an expansion of more than ``limit`` calculations, with its size and a rough time for it.

    ``seconds_per(model chemistry, order)``: the cost model's one-core seconds for one calculation of that order.
    """
    from qcmb_dask.errors import InvalidInput

    total = sum(sum(per_order.values()) for per_order in counts.values())
    limit = DEFAULT_MAX_CALCULATIONS if limit is None else limit
    if total <= limit:
        return
    seconds = sum(number * seconds_per(mc, order) for mc, per in counts.items() for order, number in per.items())
    largest = max(order for per in counts.values() for order in per)
    raise InvalidInput(
        f"this expansion needs up to {total:.4g} calculations (up to {largest}-body), roughly "
        f"{_years(seconds)} on one core; qcmb_dask plans at most {limit:,}. Lower max_nbody, or use fewer "
        "fragments; to run it anyway, raise the limit: qcmb_dask.max-calculations in the Dask config "
        "(e.g. DASK_QCMB_DASK__MAX_CALCULATIONS=5000000)."
    )


def _years(seconds: float) -> str:
    if seconds < 86400 * 365:
        return f"{seconds / 86400:.3g} days"
    return f"{seconds / (86400 * 365):.3g} years"
