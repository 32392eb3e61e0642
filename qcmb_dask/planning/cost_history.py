"""Measured fragment durations refine the cost model, per program, method, basis and driver.

The model (:mod:`qcmb_dask.planning.cost`) is fitted to PySCF on one machine. Another machine is faster or slower
by a factor, and another program by a factor per method (``benchmarks/README.md``, section 5, has NWChem's),
so across the levels of a multi-level run the model's order is no longer the real one. What a run
measures fixes both, for the runs after it: every calculation it computed (not those taken from the
store, not the failed ones) adds its ratio of measured core-seconds (wall time × cores it was given)
to the model's estimate.

An estimate is then the model's times the median of the latest ratios (at least :data:`MIN_SAMPLES`) of
its kind (program, method, basis, driver); a kind not measured yet takes the median over its program's
kinds, else over every kind (the machine's speed), so that measured and unmeasured calculations of one
run stay in the same units. The fragment's size still comes from the model: only the factor is learned.

The history lives in the result store's directory (``cost-history.json``): kept wherever results are
kept, not at all with ``cache=False``, and cleared with them (``qcmb-dask cache clear``). It only
orders fragments and feeds the printed estimates and the ETA; it never changes a result. Two runs
that finish together may lose one's additions (last write wins), which costs nothing but a few samples.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import statistics
import warnings
from collections.abc import Iterable
from pathlib import Path

from qcmb_dask.errors import StoreWarning
from qcmb_dask.store import write_atomically

GPU = "gpu"
FILE = "cost-history.json"
FORMAT = "qcmb-dask-cost-history-1"
#: Ratios kept per kind: the latest runs count, so a new machine or program version washes out older ones.
KEEP = 64
#: Fewer ratios than this leave the model's estimate alone: one slow first call (imports) is no evidence.
MIN_SAMPLES = 3


def kind_of(task, device: str = "cpu") -> str:
    """What a ratio is kept under: one program running one method in one basis for one driver, on one kind of
    device (a GPU's ratios, over :func:`qcmb_dask.planning.placement.gpu_seconds`, are kept apart: ``...|gpu``)."""
    parts = (task.program, task.method, task.basis_set, task.driver) + ((GPU,) if device == GPU else ())
    return "|".join(str(part).lower() for part in parts)


def _on_gpu(kind: str) -> bool:
    return kind.endswith("|" + GPU)


def load(root: Path | None) -> dict[str, list[float]]:
    """kind -> the latest ratios (oldest first); empty without a store, a history or a readable one."""
    if root is None:
        return {}
    path = Path(root) / FILE
    try:
        content = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):  # no history yet (a store that is not there: record() says so)
        return {}
    except (OSError, ValueError) as err:
        warnings.warn(
            f"qcmb_dask: cost history {path} unreadable ({err}); using the cost model alone. The next run's "
            "measurements replace it (or delete it).",
            StoreWarning,
            stacklevel=2,
        )
        return {}
    if not isinstance(content, dict) or content.get("format") != FORMAT or not isinstance(content.get("ratios"), dict):
        return {}
    return {
        kind: [float(r) for r in ratios if isinstance(r, (int, float)) and r > 0]
        for kind, ratios in content["ratios"].items()
        if isinstance(ratios, list)
    }


def factors(history: dict[str, list[float]]) -> dict[str, tuple[float, int]]:
    """kind -> (median ratio, number of ratios), for kinds with at least :data:`MIN_SAMPLES` ratios."""
    return {kind: (statistics.median(r), len(r)) for kind, r in history.items() if len(r) >= MIN_SAMPLES}


def measured_ratios(
    tasks: Iterable,
    records: Iterable[dict],
    cores_per_task: int,
    devices: dict[str, str] | None = None,
    processes_per_gpu: int = 1,
) -> list[tuple[str, float]]:
    """(kind, measured core-seconds / model estimate) for every calculation a run computed.

    ``tasks``: the plan's :class:`~qcmb_dask.planning.plan.FragmentTask` (their ``model_cost`` is the model's
    estimate); ``records``: the run's fragment ends (:attr:`qcmb_dask.diagnostics.runlog.RunLog.records`).
    ``devices``: label -> where it ran (:mod:`qcmb_dask.planning.placement`); a GPU's seconds are measured
    against the GPU model with ``processes_per_gpu`` sharing its card. Only the last :data:`KEEP` of each kind
    are returned (all the history keeps): a run of a million calculations holds no list of a million ratios.
    """
    from qcmb_dask.planning.placement import gpu_seconds

    devices = devices or {}
    by_label = {task.label: task for task in tasks}
    ratios: dict[str, collections.deque] = {}

    def add(kind: str, ratio: float) -> None:
        ratios.setdefault(kind, collections.deque(maxlen=KEEP)).append(ratio)

    for record in records:
        task = by_label.get(record.get("label"))
        start, stop = record.get("start"), record.get("stop")
        if task is None or not record.get("ok") or record.get("from_store") or start is None or stop is None:
            continue
        if devices.get(task.label) == GPU:
            modelled = gpu_seconds(task.model_cost, processes_per_gpu)
            if stop > start and modelled > 0:
                add(kind_of(task, GPU), (stop - start) / modelled)
            continue
        seconds = (stop - start) * cores_per_task
        if seconds > 0 and task.model_cost > 0:
            add(kind_of(task), seconds / task.model_cost)
    return [(kind, ratio) for kind, kept in ratios.items() for ratio in kept]


def record(root: Path | None, ratios: list[tuple[str, float]]) -> None:
    """Add a run's ratios to the history; a history that cannot be written is a warning, never an error."""
    if root is None or not ratios:
        return
    history = load(root)
    for kind, ratio in ratios:
        history.setdefault(kind, []).append(ratio)
    content = {"format": FORMAT, "ratios": {kind: r[-KEEP:] for kind, r in sorted(history.items())}}
    try:
        write_atomically(Path(root) / FILE, json.dumps(content, indent=1).encode())
    except OSError as err:
        warnings.warn(
            f"qcmb_dask: cost history not written to {root} ({err}); results are unaffected, later plans keep "
            "the earlier estimates. Free space or permissions there, or pass cache=<another directory>.",
            StoreWarning,
            stacklevel=2,
        )


def factor_for(task, history: dict[str, list[float]]) -> tuple[float, int, str] | None:
    """(factor, ratios it is the median of, what they measured) for ``task``; None below :data:`MIN_SAMPLES`.

    From the closest measurements there are enough of: its kind, else its program, else any calculation.
    """
    kind = kind_of(task)
    program = kind.split("|", 1)[0]
    history = {k: r for k, r in history.items() if not _on_gpu(k)}
    scopes = (
        ("calculations like these", [history.get(kind, [])]),
        (f"{program} calculations", [r for k, r in history.items() if k.split("|", 1)[0] == program]),
        ("calculations", list(history.values())),
    )
    for what, pools in scopes:
        pooled = [ratio for pool in pools for ratio in pool]
        if len(pooled) >= MIN_SAMPLES:
            return statistics.median(pooled), len(pooled), what
    return None


def gpu_factor(root: Path | None) -> float:
    """Measured GPU seconds over the GPU model's, the median of every GPU ratio the store has (1.0 below
    :data:`MIN_SAMPLES`): one card's speed against the reference card the model was fitted on."""
    pooled = [ratio for kind, ratios in load(root).items() if _on_gpu(kind) for ratio in ratios]
    return statistics.median(pooled) if len(pooled) >= MIN_SAMPLES else 1.0


def refine(plan, root: Path | None):
    """``plan`` with each estimate the model's times its measured factor, where the store's history has one;
    the plan's ``cost_factors`` say, per model chemistry, which factor and from what."""
    history = load(root)
    if sum(len(ratios) for ratios in history.values()) < MIN_SAMPLES:
        return plan
    tasks, used = [], {}
    for task in plan.tasks:
        factor = used.get(task.model_chemistry) or factor_for(task, history)
        if factor is None:  # only GPU times measured so far: the one-core estimate stays the model's
            tasks.append(task)
            continue
        tasks.append(dataclasses.replace(task, cost=task.model_cost * factor[0]))
        used[task.model_chemistry] = factor
    return dataclasses.replace(plan, tasks=tasks, cost_factors=used)


def clear(root: Path) -> bool:
    """Forget every measurement; True if there was a history."""
    path = Path(root) / FILE
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed
