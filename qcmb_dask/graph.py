"""Plan -> Dask task graph: parent molecule, one node per fragment, one per n-body level, one analysis node.

Keys are named so that the dashboard groups fragments by n-body level (Dask groups by key prefix:
``fragment-two-body-17-<token>`` counts under ``fragment-two-body``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import dask
from dask.delayed import Delayed

from . import analysis
from .fragment import FragmentJob, run_fragment
from .plan import Plan

ORDERINGS = ("free", "by_level")
_NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve")


def nbody_word(nbody: int) -> str:
    """A key word for a level with letters only: Dask's key grouping stops at the first word with a digit."""
    return _NUMBER_WORDS[nbody - 1] if 1 <= nbody <= len(_NUMBER_WORDS) else "many"


@dataclass
class MBEGraph:
    """The Delayed objects of one expansion. ``result.compute()`` gives the ManyBodyResult."""

    result: Delayed
    levels: Dict[int, Delayed]
    fragments: Dict[str, Delayed]
    parent: Delayed


def build(plan: Plan, *, task_config: dict, ordering: str = "free") -> MBEGraph:
    """Build the graph of ``plan``; ``task_config`` is QCEngine's per-fragment cores/memory."""
    if ordering not in ORDERINGS:
        raise ValueError(f"ordering={ordering!r}: expected one of {ORDERINGS}.")
    token = plan.token
    model = plan.input.model
    keep_atomic = model.specification.protocols.cluster_results.value == "all"

    parent = dask.delayed(_parent_molecule, pure=True)(model.molecule, dask_key_name=f"parent-molecule-{token}")

    by_level: Dict[int, List[str]] = {}
    for task in plan.tasks:
        by_level.setdefault(task.nbody, []).append(task.label)
    # by_level: every level-k fragment waits on a barrier node behind all level-(k-1) fragments.
    strict_levels = ordering == "by_level"

    fragments: Dict[str, Delayed] = {}
    previous_barrier: Optional[Delayed] = None
    for nbody in sorted(by_level):
        tasks_here = [t for t in plan.tasks if t.nbody == nbody]
        for index, task in enumerate(tasks_here):
            job = FragmentJob(
                label=task.label,
                nbody=task.nbody,
                real=task.real,
                basis=task.basis,
                program=task.program,
                specification=plan.specifications[task.model_chemistry]["specification"],
                embedding_charges=plan.embedding_charges,
                task_config=task_config,
                keep_atomic_result=keep_atomic,
            )
            fragments[task.label] = dask.delayed(run_fragment, pure=True)(
                parent, job, after=previous_barrier, dask_key_name=f"fragment-{nbody_word(nbody)}-body-{index}-{token}"
            )
        if strict_levels:
            previous_barrier = dask.delayed(_barrier, pure=True)(
                [fragments[label] for label in by_level[nbody]], dask_key_name=f"level-barrier-{nbody}-{token}"
            )

    levels: Dict[int, Delayed] = {}
    for nbody, labels in plan.level_labels.items():
        needed = [fragments[t.label] for t in plan.tasks if t.nbody <= nbody]
        levels[nbody] = dask.delayed(analysis.level_result, pure=True)(
            plan.input, nbody, labels, needed, dask_key_name=f"mbe-level-{nbody}-{token}"
        )

    labels = [t.label for t in plan.tasks]
    result = dask.delayed(analysis.final_result, pure=True)(
        plan.input, labels, list(fragments.values()), list(levels.values()), dask_key_name=f"mbe-result-{token}"
    )
    return MBEGraph(result=result, levels=levels, fragments=fragments, parent=parent)


def _parent_molecule(molecule):
    return molecule


def _barrier(_outputs) -> None:
    return None

