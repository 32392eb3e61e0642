"""Plan -> Dask task graph: parent molecule, one node per fragment, one per n-body level, one analysis node.

The graph is one materialized layer built directly from the plan, linear in the number of fragments
(``benchmarks/planning.py`` measures it), with a ``Delayed`` handle per node. Keys are named so that the
dashboard groups fragments by n-body level (Dask groups by key prefix: ``fragment-two-body-17-<run>-<token>``
counts under ``fragment-two-body``), and carry the run's id, so that runs sharing a scheduler never share a
node. Fragment priorities (:mod:`qcmb_dask.planning.priorities`) run cheap low levels first where that costs the
makespan little, and the most expensive calculations first otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from dask.base import tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from dask.task_spec import DataNode, Task, TaskRef
from dask.task_spec import List as TaskList

from qcmb_dask import compat, keys
from qcmb_dask.keys import fragment_key
from qcmb_dask.planning import derivatives
from qcmb_dask.planning import priorities as fragment_priorities
from qcmb_dask.planning.placement import Placement
from qcmb_dask.planning.plan import Plan
from qcmb_dask.qcmanybody_adapter import prepare_parent
from qcmb_dask.worker import analysis, displaced
from qcmb_dask.worker.fragment import FragmentJob, RunPolicy, run_fragment

ORDERINGS = ("free", "by_level")
#: Analysis nodes are cheap and unblock results; they go before any waiting fragment.
ANALYSIS_PRIORITY = 10**9


@dataclass
class MBEGraph:
    """Delayed handles into one graph. ``result.compute()`` gives the ManyBodyResult (or raises
    :class:`~qcmb_dask.errors.FragmentsFailed`); ``outcome`` gives an :class:`~qcmb_dask.worker.analysis.Outcome`
    that never raises for failed calculations."""

    result: Delayed
    outcome: Delayed
    levels: dict[int, Delayed]
    fragments: Mapping[str, Delayed]
    #: label -> what its fragment node runs (names failures the client learns of from Dask)
    jobs: dict[str, FragmentJob]
    parent: Delayed
    #: key -> Dask priority (higher runs first); fragments ranked by estimated cost
    priorities: dict[str, int]
    #: this run's id in the fragments' events
    run_id: str = ""
    #: label -> estimated one-core seconds (the ETA weighs fragments by it)
    costs: Mapping[str, float] = field(default_factory=dict)
    #: n-body level -> calculations of that level (a calculation counts at the lowest level needing it)
    level_sizes: dict[int, int] = field(default_factory=dict)
    #: n-body level -> (the input, the labels its analysis reads, screened): to redo a level node lost with a worker
    level_inputs: dict[int, tuple] = field(default_factory=dict)
    #: label -> the gradient calculations its Hessian is made of, for fragments whose Hessian comes from gradients
    hessian_parts: dict[str, tuple[FragmentJob, ...]] = field(default_factory=dict)
    #: each fragment's device, where its program can use a GPU and the run has GPU workers
    placement: Placement | None = None
    #: the analysis as a tree (:mod:`qcmb_dask.worker.tree`): the batches, each reduced to partial sums, in the
    #: order they are submitted; empty where the analysis reads every fragment result in one node
    batches: list[Batch] = field(default_factory=list)
    #: the tree's other nodes (merges, levels, outcome, result): key -> the keys it reads, in submission order
    tree: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: what the tree's level and outcome nodes are given beside the partial sums (a streamed run forms them itself)
    analysis: TreeAnalysis | None = None
    #: whether the graph may go to the scheduler batch by batch (not where levels wait on barriers)
    streamable: bool = True
    #: the whole graph, key -> task, and its layer's annotations: what a streamed submission sends part by part
    tasks: Mapping = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)


class _Handles(Mapping):
    """label -> the Delayed handle of its fragment node, made when read: a run of a million calculations that never
    reads them (a streamed one) holds no million handles."""

    def __init__(self, keys: dict[str, str], handle: Callable[[str], Delayed]):
        self._keys, self._handle = keys, handle

    def __getitem__(self, label: str) -> Delayed:
        return self._handle(self._keys[label])

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class _Costs(Mapping):
    """label -> its estimated one-core seconds, read from the plan's tasks (no dict of its own until looked up)."""

    def __init__(self, tasks: list):
        self._tasks = tasks
        self._index: dict[str, int] | None = None

    def __getitem__(self, label: str) -> float:
        if self._index is None:
            self._index = {task.label: i for i, task in enumerate(self._tasks)}
        return self._tasks[self._index[label]].cost

    def __iter__(self) -> Iterator[str]:
        return (task.label for task in self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)

    def items(self):
        return ((task.label, task.cost) for task in self._tasks)


def annotations_for(graph: MBEGraph, keys) -> dict | None:
    """The graph layer's annotations for a part of it: each holds only ``keys``' values (a part sent with the
    whole graph's priorities would carry every key's, batch after batch)."""
    if not graph.annotations:
        return None
    keys = set(keys)
    return {name: annotation.restricted(keys) for name, annotation in graph.annotations.items()}


@dataclass(frozen=True)
class TreeAnalysis:
    """The arguments of the tree's level and outcome nodes (:mod:`qcmb_dask.worker.tree`) other than the sums."""

    #: analysis (an n-body level, or ``tree.WHOLE``) -> the expansion it analyzes
    analyses: dict
    #: n-body level -> calculations its truncation needs
    level_counts: dict[int, int]
    normalized: object
    #: labels in QCManyBody's order where each calculation's properties are kept, else empty
    order: list[str]
    #: a screened expansion's cutoffs, kept k-mers and distances (``Screening.for_analysis()``), else None
    screening: dict | None = None


@dataclass(frozen=True)
class Batch:
    """Fragments submitted together and reduced to one partial sum (:func:`qcmb_dask.worker.tree.batch`)."""

    nbody: int
    #: the fragments' nodes (a Hessian from gradients: its gradient tasks too), in the graph
    keys: tuple[str, ...]
    #: the fragment nodes the sum reads
    fragments: tuple[str, ...]
    #: the node of its partial sum
    sum_key: str
    #: what this input calls each of ``fragments``
    labels: tuple[str, ...] = ()
    #: a screened expansion's weights of these labels (:func:`qcmb_dask.worker.screened.tree_weights`), else None
    weights: dict | None = None


def build(
    plan: Plan,
    *,
    task_config: dict,
    policy: RunPolicy | None = None,
    ordering: str = "free",
    prioritize: bool = True,
    run_id: str | None = None,
    workers: int | None = None,
    placement: Placement | None = None,
    task_resources: dict | None = None,
) -> MBEGraph:
    """Build the graph of ``plan``; ``task_config`` is QCEngine's per-fragment cores/memory/retries,
    ``policy`` the store, timeout and escalation every fragment follows.

    ``prioritize=False`` leaves the order to Dask (used by the makespan benchmark for comparison). ``workers``:
    how many fragments run at once, for the choice of :mod:`qcmb_dask.planning.priorities` (default: this
    machine's cores).
    ``run_id`` names this run in the events fragments log and in every key (default: a fresh random id): two
    runs on one scheduler never share a node, so neither runs the other's settings.
    ``placement``: each fragment's device (:mod:`qcmb_dask.planning.placement`); a fragment placed on a GPU asks
    for a GPU worker (Dask resource ``GPU``, with ``task_resources``, the resources every task asks for).
    """
    return build_many(
        [plan],
        task_config=task_config,
        policy=policy,
        ordering=ordering,
        prioritize=prioritize,
        run_id=run_id,
        workers=workers,
        placements=[placement] if placement is not None else None,
        task_resources=task_resources,
    )[0]


def build_many(
    plans: list[Plan],
    *,
    task_config: dict,
    policy: RunPolicy | None = None,
    ordering: str = "free",
    prioritize: bool = True,
    run_id: str | None = None,
    workers: int | None = None,
    placements: list[Placement] | None = None,
    task_resources: dict | None = None,
) -> list[MBEGraph]:
    """One graph for several inputs (a scan, a trajectory): a graph handle per plan, in order, sharing one
    Dask graph in which a calculation several inputs need (the same atoms, real and ghost, the same model
    chemistry) is one node, computed once. Arguments as for :func:`build`.
    """
    if ordering not in ORDERINGS:
        raise ValueError(f"ordering={ordering!r}: expected one of {ORDERINGS}.")
    policy = policy or RunPolicy()
    run_id = run_id or uuid.uuid4().hex[:12]
    dsk = GraphTasks()
    priorities: dict[str, int] = {}
    gpu_keys: set[str] = set()
    cpu_keys: set[str] = set()
    #: calculation identity -> its fragment key (only across several plans: one plan's labels are unique)
    shared: dict[str, str] | None = {} if len(plans) > 1 else None
    parts = [
        _add_plan(
            dsk,
            priorities,
            shared,
            plan,
            number,
            task_config=task_config,
            policy=policy,
            ordering=ordering,
            prioritize=prioritize,
            run_id=run_id,
            workers=workers or os.cpu_count() or 1,
            placement=placements[number] if placements else None,
            gpu_keys=gpu_keys,
            cpu_keys=cpu_keys,
        )
        for number, plan in enumerate(plans)
    ]
    annotations = {"priority": _Priority(priorities)} if priorities else {}
    if gpu_keys or cpu_keys:
        annotations["resources"] = _DeviceResources(gpu_keys, cpu_keys, task_resources)
    layer_name = f"qcmb-dask-mbe-{tokenize(run_id, [plan.token for plan in plans])}"
    hlg = HighLevelGraph({layer_name: MaterializedLayer(dsk, annotations=annotations or None)}, {layer_name: set()})

    def handle(key: str) -> Delayed:
        return Delayed(key, hlg, layer=layer_name)

    graphs = []
    for number, (plan, part) in enumerate(zip(plans, parts)):
        graphs.append(
            MBEGraph(
                result=handle(part.result_key),
                outcome=handle(part.outcome_key),
                levels={nbody: handle(key) for nbody, key in part.level_keys.items()},
                fragments=_Handles(part.fragment_keys, handle),
                jobs=part.jobs,
                parent=handle(part.parent_key),
                priorities=priorities,
                run_id=run_id,
                costs=_Costs(plan.tasks),
                level_sizes={nbody: len(keys) for nbody, keys in part.keys_by_level.items()},
                level_inputs={
                    nbody: (plan.input, tuple(labels), plan.screening is not None)
                    for nbody, labels in plan.level_labels.items()
                },
                hessian_parts=part.hessian_parts,
                placement=placements[number] if placements else None,
                batches=part.batches,
                tree=part.tree,
                analysis=part.analysis,
                streamable=ordering == "free",
                tasks=dsk,
                annotations=annotations,
            )
        )
    return graphs


@dataclass
class _PlanKeys:
    parent_key: str
    result_key: str
    outcome_key: str
    level_keys: dict[int, str]
    #: this plan's label -> its fragment's key (shared with other plans where the calculation is the same)
    fragment_keys: dict[str, str]
    keys_by_level: dict[int, list[str]]
    jobs: dict[str, FragmentJob]
    hessian_parts: dict[str, tuple[FragmentJob, ...]]
    batches: list[Batch] = field(default_factory=list)
    tree: dict[str, tuple[str, ...]] = field(default_factory=dict)
    analysis: TreeAnalysis | None = None


def _add_plan(
    dsk: GraphTasks,
    priorities: dict,
    shared: dict[str, str] | None,
    plan: Plan,
    number: int,
    *,
    task_config: dict,
    policy: RunPolicy,
    ordering: str,
    prioritize: bool,
    run_id: str,
    workers: int,
    placement: Placement | None = None,
    gpu_keys: set[str] | None = None,
    cpu_keys: set[str] | None = None,
) -> _PlanKeys:
    """Add one plan's nodes to ``dsk``; a calculation already in ``shared`` is not added again."""
    token = tokenize(plan.token, run_id, number)
    model = plan.input.model
    keep_atomic = model.specification.protocols.cluster_results.value == "all"

    parent_key = f"parent-molecule-{token}"
    dsk[parent_key] = Task(parent_key, prepare_parent, DataNode(None, model.molecule))

    jobs: dict[str, FragmentJob] = {}
    fragment_keys: dict[str, str] = {}
    new_keys: list[str] = []
    keys_by_level: dict[int, list[str]] = {}
    identity = _calculation_identity(plan) if shared is not None else None
    on_device: dict = {}  # (model chemistry, device) -> its specification: one dict shared by its fragments
    gpu_task_config = {**task_config, "ncores": 1}  # one core drives the card
    for task in plan.tasks:
        # across several inputs, a fragment's events and failures name the input it first belongs to
        label = task.label if shared is None else f"[{number}] {task.label}"
        device = placement.devices.get(task.label) if placement is not None else None
        on_gpu = device == "gpu"  # a walltime-aware worker then weighs the GPU's seconds
        jobs[task.label] = fragment_job(
            plan,
            task,
            gpu_task_config if on_gpu else task_config,
            policy,
            run_id,
            label=label,
            device=device,
            on_device=on_device,
            estimate_s=placement.gpu_seconds(task) if on_gpu else None,
        )
        same = identity(task, keep_atomic) if identity else None
        key = shared.get(same) if shared is not None else None
        created = key is None  # a calculation another input has already is that input's node, on its device
        if created:
            key = fragment_key(task.nbody, len(new_keys), run_id, token[:12])
            new_keys.append(key)
            if shared is not None:
                shared[same] = key
        fragment_keys[task.label] = key
        keys_by_level.setdefault(task.nbody, []).append(key)
        if created and gpu_keys is not None and device == "gpu":
            gpu_keys.add(key)
        elif created and cpu_keys is not None and placement is not None and placement.cpu_restricted:
            cpu_keys.add(key)

    # Cheap low levels first where that costs the makespan little, then longest processing time first.
    if prioritize:
        for label, rank in fragment_priorities.ranks(plan.tasks, workers, early_levels_tolerance()).items():
            key = fragment_keys[label]
            priorities[key] = max(priorities.get(key, rank), rank)

    barrier_of_level: dict[int, str] = {}
    if ordering == "by_level":
        # Every level-k fragment waits on a barrier behind all level-(k-1) fragments.
        for nbody, keys in keys_by_level.items():
            barrier = f"level-barrier-{nbody}-{token}"
            dsk[barrier] = Task(barrier, _barrier, TaskList(*[TaskRef(k) for k in keys]))
            barrier_of_level[nbody] = barrier
            priorities[barrier] = ANALYSIS_PRIORITY

    differentiated = derivatives.of_plan(plan)
    step = derivatives.step() if differentiated else None
    fragment_atoms = [len(atoms) for atoms in model.molecule.fragments]

    def natoms(task) -> int:
        return sum(fragment_atoms[i - 1] for i in task.basis)

    hessian_parts: dict[str, tuple[FragmentJob, ...]] = {}
    part_keys: dict[str, tuple[str, ...]] = {}  # fragment key -> its gradient tasks, for a Hessian from gradients
    new = set(new_keys)
    for task in plan.tasks:
        key = fragment_keys[task.label]
        if key not in new:
            continue
        previous = barrier_of_level.get(_previous_level(keys_by_level, task.nbody))
        after = TaskRef(previous) if previous else None
        # A data producer is "root-ish" to the scheduler whatever its group's size: it waits in the scheduler's
        # queue and goes to a worker only when a thread is free, in priority order. Assigned eagerly instead
        # (Dask's choice for groups smaller than twice the thread count), fragments would ignore priorities, and
        # every fragment assigned to a worker that dies counts as a suspect, so one fragment that crashes its
        # worker would fail innocent ones queued behind it.
        if task.model_chemistry in differentiated:
            parts = _hessian_parts(dsk, key, parent_key, jobs[task.label], natoms(task), step, after)
            dsk[key] = Task(key, displaced.assemble, DataNode(None, jobs[task.label]), step, *map(TaskRef, parts))
            for part in parts:
                priorities[part] = priorities.get(key, 0)
                if key in (gpu_keys or ()):
                    gpu_keys.add(part)
                elif key in (cpu_keys or ()):
                    cpu_keys.add(part)
            hessian_parts[task.label] = tuple(parts.values())
            part_keys[key] = tuple(parts)
            continue
        dsk.fragment(key, parent_key, jobs[task.label], after)

    given = None
    if _as_tree(plan):
        batches, tree, level_keys, outcome_key, given = _add_tree(
            dsk, priorities, plan, token, fragment_keys, part_keys, new
        )
    else:
        batches, tree = [], {}
        level_keys, outcome_key = _add_whole_analysis(dsk, priorities, plan, token, fragment_keys)
    result_key = f"mbe-result-{token}"
    dsk[result_key] = Task(result_key, analysis.answer, TaskRef(outcome_key))
    priorities[outcome_key] = priorities[result_key] = ANALYSIS_PRIORITY
    if tree:
        tree[result_key] = (outcome_key,)
    return _PlanKeys(
        parent_key,
        result_key,
        outcome_key,
        level_keys,
        fragment_keys,
        keys_by_level,
        jobs,
        hessian_parts,
        batches,
        tree,
        given,
    )


def _as_tree(plan: Plan) -> bool:
    """The analysis as a tree of partial sums, except where each calculation's whole result is kept
    (``cluster_results="all"``): the analysis then reads every one of them."""
    return plan.input.model.specification.protocols.cluster_results.value != "all"


def _add_whole_analysis(dsk: GraphTasks, priorities: dict, plan: Plan, token: str, fragment_keys: dict) -> tuple:
    """Level nodes and the outcome node, each reading every fragment result it needs (QCManyBody's analysis)."""
    # The analyses name each output by this plan's own labels: a shared node carries another input's label.
    level_keys: dict[int, str] = {}
    by_level = {}
    for task in plan.tasks:
        by_level.setdefault(task.nbody, []).append(task.label)
    for nbody, labels in plan.level_labels.items():
        key = f"mbe-level-{nbody}-{token}"
        needed = [label for level, names in by_level.items() if level <= nbody for label in names]
        dsk[key] = Task(
            key,
            analysis.level_result,
            DataNode(None, plan.input),
            nbody,
            list(labels),
            TaskList(*[TaskRef(fragment_keys[label]) for label in needed]),
            needed,
            plan.screening is not None,
        )
        level_keys[nbody] = key
        priorities[key] = ANALYSIS_PRIORITY

    outcome_key = f"mbe-outcome-{token}"
    dsk[outcome_key] = Task(
        outcome_key,
        analysis.final_outcome,
        DataNode(None, plan.input),
        [t.label for t in plan.tasks],
        TaskList(*[TaskRef(fragment_keys[t.label]) for t in plan.tasks]),
        TaskList(*[TaskRef(k) for k in level_keys.values()]),
        DataNode(None, plan.screening.for_analysis() if plan.screening is not None else None),
    )
    return level_keys, outcome_key


#: partial sums one merge node adds (the tree's fan-in)
FAN_IN = 16
#: each calculation's properties go into the result (``cluster_properties``, as QCManyBody lists them) while they
#: take at most this much memory in the final node; above it they are left out (they are in the result store)
PER_CALCULATION_BUDGET = 256 * 2**20


def _add_tree(
    dsk: GraphTasks, priorities: dict, plan: Plan, token: str, fragment_keys: dict, part_keys: dict, new: set
) -> tuple:
    """Batches of fragments, each reduced to partial sums on a worker as its results arrive; per level a tree of
    merges; a level node per truncation reading the totals of the levels up to it; the outcome node.
    Returns (batches in submission order, the tree's other nodes and what they read, level keys, outcome key, and
    what its level and outcome nodes are given besides sums)."""
    from qcmb_dask.options import setting
    from qcmb_dask.qcmanybody_adapter import accept_embedding_charges, qcmb_computer, truncated_core
    from qcmb_dask.worker import tree as tree_nodes
    from qcmb_dask.worker.sums import Expansion

    size = max(1, int(setting("stream.batch-size", 500)))
    accept_embedding_charges(plan.input)
    computer = qcmb_computer(plan.input)
    analyses = {tree_nodes.WHOLE: Expansion.of(computer.qcmb_core)}
    analyses.update({nbody: Expansion.of(truncated_core(computer, nbody)) for nbody in plan.level_labels})
    keep_each = _keeps_each(plan)
    screening = plan.screening.for_analysis() if plan.screening is not None else None
    given = TreeAnalysis(
        analyses,
        {nbody: len(labels) for nbody, labels in plan.level_labels.items()},
        plan.input,
        _qcmanybody_order(plan, computer) if keep_each else [],
        screening,
    )
    weights = {}
    if screening is not None:  # a screened expansion's k-mers enter the sums with weights (one model chemistry)
        from qcmb_dask.worker.screened import tree_weights

        (mc,) = plan.specifications
        vmfc = analyses[tree_nodes.WHOLE].return_bsse_type == "vmfc"
        weights = tree_weights(screening, plan.nfragments, plan.max_nbody, mc, vmfc)

    by_level: dict[int, list[str]] = {}
    for task in plan.tasks:
        by_level.setdefault(task.nbody, []).append(task.label)
    batches: list[Batch] = []
    heads: list[int] = []
    for nbody in sorted(by_level):
        ordered = sorted(by_level[nbody], key=lambda label: priorities.get(fragment_keys[label], 0), reverse=True)
        for start in range(0, len(ordered), size):
            chunk = ordered[start : start + size]
            reads = [fragment_keys[label] for label in chunk]
            sum_key = f"mbe-sums-{nbody}-{len(batches)}-{token}"
            mine = {label: weights[label] for label in chunk if label in weights}
            dsk[sum_key] = Task(
                sum_key,
                tree_nodes.batch,
                DataNode(None, analyses),
                DataNode(None, chunk),
                keep_each,
                TaskList(*map(TaskRef, reads)),
                DataNode(None, mine or None),
            )
            priorities[sum_key] = ANALYSIS_PRIORITY
            own = tuple(part for key in reads if key in new for part in (*part_keys.get(key, ()), key))
            batches.append(Batch(nbody, own, tuple(reads), sum_key, tuple(chunk), mine or None))
            heads.append(priorities.get(reads[0], 0))
    # highest priority first (cheap low levels early where that costs little, else the longest), as Dask would run them
    order = sorted(range(len(batches)), key=lambda i: -heads[i])

    tree: dict[str, tuple[str, ...]] = {}
    totals: dict[int, str] = {}
    for nbody in sorted(by_level):
        layer, depth = [b.sum_key for b in batches if b.nbody == nbody], 0
        while len(layer) > 1:
            merged = []
            for start in range(0, len(layer), FAN_IN):
                group = tuple(layer[start : start + FAN_IN])
                if len(group) == 1:
                    merged.append(group[0])
                    continue
                key = f"mbe-merge-{nbody}-{depth}-{start // FAN_IN}-{token}"
                dsk[key] = Task(key, tree_nodes.merge, *map(TaskRef, group))
                priorities[key] = ANALYSIS_PRIORITY
                tree[key] = group
                merged.append(key)
            layer, depth = merged, depth + 1
        totals[nbody] = layer[0]

    level_keys: dict[int, str] = {}
    for nbody in plan.level_labels:
        key = f"mbe-level-{nbody}-{token}"
        reads = tuple(totals[level] for level in sorted(totals) if level <= nbody)
        dsk[key] = Task(
            key,
            tree_nodes.level,
            DataNode(None, analyses[nbody]),
            nbody,
            given.level_counts[nbody],
            *map(TaskRef, reads),
        )
        priorities[key] = ANALYSIS_PRIORITY
        tree[key] = reads
        level_keys[nbody] = key
    outcome_key = f"mbe-outcome-{token}"
    reads = tuple(totals[level] for level in sorted(totals))
    dsk[outcome_key] = Task(
        outcome_key,
        tree_nodes.outcome,
        DataNode(None, plan.input),
        DataNode(None, analyses[tree_nodes.WHOLE]),
        DataNode(None, given.order),
        TaskList(*map(TaskRef, level_keys.values())),
        *map(TaskRef, reads),
        screening=DataNode(None, screening),
    )
    tree[outcome_key] = (*level_keys.values(), *reads)
    return [batches[i] for i in order], tree, level_keys, outcome_key, given


#: a screened plan's calculations are listed in QCManyBody's order where its full expansion has at most this many
#: (finding that order enumerates the full expansion, which screening avoids)
ORDERED_UP_TO = 1_000_000


def _qcmanybody_order(plan: Plan, computer) -> list[str]:
    """The plan's labels in the order QCManyBody lists calculations (``cluster_properties``): the plan's own, but
    for a screened plan, whose kept k-mers are listed as the screening found them (QCManyBody's order is found
    where the full expansion is small, :data:`ORDERED_UP_TO`)."""
    labels = [t.label for t in plan.tasks]
    if plan.screening is None or sum(plan.screening.full.values()) > ORDERED_UP_TO:
        return labels
    from qcmb_dask.qcmanybody_adapter import iterate_calculations

    mine = set(labels)
    return [label for _, label, _, _ in iterate_calculations(computer.qcmb_core) if label in mine]


def early_levels_tolerance() -> float:
    """``qcmb_dask.early-levels-tolerance``, checked (:mod:`qcmb_dask.planning.priorities`)."""
    from qcmb_dask.errors import InvalidArgument
    from qcmb_dask.options import setting

    value = setting("early-levels-tolerance", fragment_priorities.TOLERANCE)
    try:
        tolerance = float(value)
    except (TypeError, ValueError):
        tolerance = -1.0
    if isinstance(value, bool) or not tolerance >= 0:
        raise InvalidArgument(
            f"qcmb_dask.early-levels-tolerance={value!r}: expected the share of the makespan the early levels may "
            "cost, a number >= 0 (0: longest first throughout; default 0.02)."
        )
    return tolerance


def _keeps_each(plan: Plan) -> bool:
    """Whether each calculation's full-size properties fit :data:`PER_CALCULATION_BUDGET` in the final node."""
    natom = len(plan.input.model.molecule.symbols)
    floats = 1 + (3 * natom if plan.driver in ("gradient", "hessian") else 0)
    floats += 9 * natom**2 if plan.driver == "hessian" else 0
    # 2.5 kB besides the floats: what an energy calculation's entry costs in the final node, measured (tracemalloc)
    # there as its partial sums and as QCManyBody's result model
    return len(plan) * (8 * floats + 2500) <= PER_CALCULATION_BUDGET


def fragment_job(
    plan: Plan,
    task,
    task_config: dict,
    policy: RunPolicy,
    run_id: str = "",
    label=None,
    device: str | None = None,
    on_device: dict | None = None,
    estimate_s: float | None = None,
) -> FragmentJob:
    """What a worker needs for one task of ``plan``: the job a graph node runs (and the preflight, with the same
    store key). ``device``: where it was placed, ``"cpu"`` or ``"gpu"``, told to its program as the keyword
    ``device`` (placed are only the fragments of programs that run on GPUs); None leaves the keywords as given.
    ``on_device``: the specifications with a device made so far, shared by the fragments of a graph.
    ``estimate_s``: its seconds where they are not its cores' (a GPU's); default from its cost."""
    specification = plan.specifications[task.model_chemistry]["specification"]
    if device is not None:
        specification = _on_device(plan, task.model_chemistry, device, on_device)
    return FragmentJob(
        label=label or task.label,
        nbody=task.nbody,
        real=task.real,
        basis=task.basis,
        program=task.program,
        specification=specification,
        embedding_charges=plan.embedding_charges,
        task_config=task_config,
        keep_atomic_result=plan.input.model.specification.protocols.cluster_results.value == "all",
        policy=policy,
        run=run_id,
        input_token=plan.token,
        estimate_s=estimate_s if estimate_s is not None else task.cost / max(1, int(task_config.get("ncores") or 1)),
    )


def _on_device(plan: Plan, model_chemistry: str, device: str, made: dict | None = None) -> dict:
    """The model chemistry's specification with ``device`` in its keywords (the store's key leaves it out: the
    number is the same on either device); one per model chemistry and device where ``made`` keeps them, not a
    copy per fragment (a million fragments would hold a million copies in the client)."""
    if made is not None and (model_chemistry, device) in made:
        return made[model_chemistry, device]
    spec = plan.specifications[model_chemistry]["specification"]
    keywords = {k: v for k, v in (spec.get("keywords") or {}).items() if str(k).lower() != "device"}
    specification = {**spec, "keywords": {**keywords, "device": device}}
    if made is not None:
        made[model_chemistry, device] = specification
    return specification


def _hessian_parts(
    dsk: GraphTasks, key: str, parent_key: str, job: FragmentJob, natom: int, step: float, after
) -> dict:
    """The gradient tasks of a Hessian by differences (:mod:`qcmb_dask.worker.displaced`): at the geometry, then
    every coordinate displaced + and -; key -> job, in the order the assembly reads them."""
    import dataclasses

    count = 1 + len(displaced.displacements(natom, step))
    gradient = dataclasses.replace(
        job,
        specification={**job.specification, "driver": "gradient"},
        estimate_s=job.estimate_s / count if job.estimate_s else None,
    )
    parts = {f"gradient-at-{key}": dataclasses.replace(gradient, label=f"{job.label} (gradient for its Hessian)")}
    for number, (atom, axis, signed) in enumerate(displaced.displacements(natom, step)):
        moved = f"atom {atom} {'xyz'[axis]}{'+' if signed > 0 else '-'}{step:g}"
        parts[f"displaced-{number}-{key}"] = dataclasses.replace(
            gradient, displacement=(atom, axis, signed), label=f"{job.label} ({moved})"
        )
    for part, part_job in parts.items():
        dsk[part] = compat.producer_task(part, displaced.run_part, TaskRef(parent_key), DataNode(None, part_job), after)
    return parts


def _calculation_identity(plan: Plan):
    """task -> a digest of everything its fragment molecule and input are made of: the same digest in two
    inputs is the same calculation (the atoms, real or ghost, and the fragment charges and multiplicities,
    the specification and program, and, with embedding charges, every point charge's position)."""
    import hashlib

    import numpy as np

    molecule = plan.input.model.molecule
    geometry = np.asarray(molecule.geometry, dtype=float)
    masses = np.asarray(molecule.masses, dtype=float)
    symbols = list(molecule.symbols)
    fragments = [list(map(int, atoms)) for atoms in molecule.fragments]
    charges, mults = molecule.fragment_charges, molecule.fragment_multiplicities
    per_fragment = [
        hashlib.sha1(
            repr((list(map(symbols.__getitem__, atoms)), charges[i], mults[i])).encode()
            + geometry[atoms].tobytes()
            + masses[atoms].tobytes()
        ).hexdigest()
        for i, atoms in enumerate(fragments)
    ]
    embedding = tokenize(geometry.tobytes(), plan.embedding_charges) if plan.embedding_charges else ""
    specification = {mc: tokenize(spec) for mc, spec in plan.specifications.items()}
    frame = repr((molecule.fix_symmetry, molecule.molecular_charge, molecule.molecular_multiplicity))

    def identity(task, keep_atomic: bool) -> str:
        atoms = [(per_fragment[i - 1], i in task.real) for i in task.basis]
        return tokenize(atoms, specification[task.model_chemistry], plan.driver, embedding, frame, keep_atomic)

    return identity


def _previous_level(keys_by_level: dict[int, list[str]], nbody: int) -> int | None:
    lower = [level for level in keys_by_level if level < nbody]
    return max(lower) if lower else None


class GraphTasks(Mapping):
    """The graph's tasks, key -> ``Task``: a fragment's is made when it is read (a streamed run reads a batch's as
    it sends them), the others are kept as made. A million fragment ``Task`` objects would hold about 600 MB in
    the client; a fragment here is its job, already kept in :attr:`MBEGraph.jobs`, and two keys."""

    def __init__(self):
        self.made: dict = {}
        # key -> its job, where it reads the first parent molecule and waits on nothing (all of a plain run's);
        # else (the parent molecule's key, its job, what it waits on)
        self.fragments: dict = {}
        self._parent: str | None = None

    def __setitem__(self, key, task) -> None:
        self.made[key] = task

    def fragment(self, key: str, parent_key: str, job: FragmentJob, after: TaskRef | None) -> None:
        if self._parent is None:
            self._parent = parent_key
        plain = parent_key == self._parent and after is None
        self.fragments[key] = job if plain else (parent_key, job, after)

    def __getitem__(self, key):
        if key in self.made:
            return self.made[key]
        entry = self.fragments[key]
        parent_key, job, after = (self._parent, entry, None) if isinstance(entry, FragmentJob) else entry
        return compat.producer_task(key, run_fragment, TaskRef(parent_key), DataNode(None, job), after)

    def __contains__(self, key) -> bool:
        return key in self.made or key in self.fragments

    def __iter__(self):
        yield from self.made
        yield from self.fragments

    def __len__(self) -> int:
        return len(self.made) + len(self.fragments)


class _Priority:
    """Per-key priority for the layer's annotation (Dask calls it with each key; 0 for unranked keys)."""

    def __init__(self, priorities: dict[str, int]):
        self.priorities = priorities

    def __call__(self, key) -> int:
        return self.priorities.get(key, 0)

    def restricted(self, keys: set) -> _Priority:
        return _Priority({key: self.priorities[key] for key in keys if key in self.priorities})


class _DeviceResources:
    """Per-key Dask resources for the layer's annotation: a GPU for the fragments placed on one, a CPU worker for
    the others where the CPU workers declare one (each with what every task of the run asks for); None leaves
    the rest (analyses) to the run's own (``Client.compute(resources=...)``)."""

    def __init__(self, gpu_keys: set[str], cpu_keys: set[str], task_resources: dict | None):
        self.gpu_keys, self.cpu_keys = gpu_keys, cpu_keys
        self.gpu = {**(task_resources or {}), keys.GPU_RESOURCE: 1}
        self.cpu = {**(task_resources or {}), keys.CPU_RESOURCE: 1}

    def __call__(self, key) -> dict | None:
        if key in self.gpu_keys:
            return self.gpu
        return self.cpu if key in self.cpu_keys else None

    def restricted(self, keys: set) -> _DeviceResources:
        part = _DeviceResources(self.gpu_keys & keys, self.cpu_keys & keys, None)
        part.gpu, part.cpu = self.gpu, self.cpu
        return part


def _barrier(_outputs) -> None:
    return None
