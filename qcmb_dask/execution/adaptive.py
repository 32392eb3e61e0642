"""Energy-screened runs: the k-mers chosen from the results as they arrive, with no level barrier.

    decisions = decide(run, session, seed_plan)            # every kept k-mer computed (and stored) as chosen
    plan = make_plan(input, ..., kept=decisions.kept())    # the kept k-mers' plan: a screened expansion
    result, _ = run.run_plan(session, plan)                # read back from the store, summed as a screened one

A k-mer's calculations are submitted as soon as its last (k-1)-mer's increment is in and the measure keeps it
(:class:`~qcmb_dask.planning.energy_screening.EnergyScreen`); nothing waits for a level. With a cheap method as
the measure, ``decide`` runs the cheap method (its own increments decide) and the expensive method runs only in
the screened plan. The assembly is the distance-screened one (:mod:`qcmb_dask.worker.screened`): the kept set is
closed under subsets. The second pass reads every calculation back from the result store, which is why an
energy-screened run needs one, and why a rerun with the same settings computes nothing new.

With ``max_nbody="auto"`` the candidates of the next order wait until the last order is complete: whether to
compute them at all depends on that order's total (the one barrier, and only in that mode).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from qcmb_dask.errors import FragmentsFailed, InvalidInput
from qcmb_dask.planning import energy_screening as es
from qcmb_dask.planning import validate
from qcmb_dask.planning.plan import Plan, task_maker, unit_calculations
from qcmb_dask.qcmanybody_adapter import prepare_parent
from qcmb_dask.worker.fragment import FragmentFailure, FragmentOutput, energy_of, fragment_error, worker_lost_error

#: seconds between two progress lines while the decisions go on
PROGRESS_EVERY_S = 10.0


@dataclass
class Decisions:
    """What an energy-screened run decided: its screen, where the order stopped, what the decisions cost."""

    request: es.EnergyRequest
    screen: es.EnergyScreen
    #: calculations the decisions ran: computed here, taken from the store
    computed: int = 0
    from_store: int = 0
    seconds: float = 0.0
    #: auto order: {"order": k, "reason": ...}
    stopped: dict[str, Any] | None = None
    #: order -> candidates that never ran because the order stopped below them
    not_reached: dict[int, int] = field(default_factory=dict)

    def kept(self) -> dict[int, list[tuple[int, ...]]]:
        top = self.stopped["order"] if self.stopped else self.screen.max_nbody
        return {order: list(kmers) for order, kmers in self.screen.kept.items() if order <= top}

    def report(self) -> dict[str, Any]:
        """``extras["qcmb_dask"]["screening"]["energy"]``: the settings, per order the candidates, computed and
        dropped k-mers, every dropped k-mer with the measure that dropped it, and what the decisions ran."""
        screen = self.screen
        dropped: dict[int, list] = {}
        for kmer, value in screen.dropped.items():
            dropped.setdefault(len(kmer), []).append((kmer, value))
        orders = range(2, screen.max_nbody + 1)
        kept = self.kept()
        report = {
            **self.request.summary(),
            "increment": "cheap method's own (nocp)" if self.request.cheap else "of the (k-1)-mers, by the measure",
            "kept": {str(k): len(kept.get(k, ())) for k in orders},
            "dropped": {str(k): len(dropped.get(k, ())) for k in orders},
            "dropped_kmers": {str(k): [list(kmer) for kmer, _ in dropped.get(k, ())] for k in orders if k in dropped},
            "dropped_measures": {str(k): [value for _, value in dropped.get(k, ())] for k in orders if k in dropped},
            "level_totals": {str(k): screen.level_total(k) for k in orders if kept.get(k)},
            "decisions": {"computed": self.computed, "from_store": self.from_store, "seconds": round(self.seconds, 3)},
        }
        if self.stopped:
            report["stopped"] = dict(self.stopped)
            if self.not_reached:
                report["not_reached"] = {str(k): n for k, n in sorted(self.not_reached.items())}
        return report


def admit(run, plan: Plan) -> None:
    """What an energy-screened run needs beyond its seed plan's checks, before a cluster starts: the result store,
    and the cheap method's program where programs run here."""
    if run.store_root is None:
        raise InvalidInput(
            "energy screening keeps what it chose in the result store and assembles the kept k-mers from it: run it "
            "with the store on (cache=True or a directory, not cache=False / --no-cache)."
        )
    if plan.energy_screening.cheap is not None and run.backend.programs_run_here:
        units = _Units(plan, plan.energy_screening, run.policy, {})
        validate.check_programs(validate.plan_requests(units.unit_plan), installed=True)


def decide(run, session, plan: Plan) -> Decisions:
    """Run the k-mers the request keeps, choosing each as its (k-1)-mers' results arrive; their results go to the
    store. ``plan``: the seed plan ``make_plan`` gives an energy-screened input (the monomers); ``run`` admitted
    it (:func:`admit`)."""
    request: es.EnergyRequest = plan.energy_screening
    run_id = f"screening-{uuid.uuid4().hex[:8]}"
    task_config = session.resources.task_config(retries=run.options.retries)
    units = _Units(plan, request, run.policy, task_config, run_id)
    screen = es.EnergyScreen(
        plan.nfragments,
        plan.max_nbody,
        request.thresholds,
        measure=es.OWN if request.cheap else request.measure,
        candidate=_within(request.distance, plan.screening.distances) if request.distance else None,
        ceiling=2 if request.auto else None,
    )
    decisions = Decisions(request, screen)
    began = time.perf_counter()
    runner = _OnCluster(session, plan) if session.client is not None else _InProcess(plan)
    progress = _Progress(run.reporter, screen, session.client, run_id, plan.bsse_type)
    failures = []
    ready = screen.first()
    complete_through = 0
    try:
        while ready or runner.busy():
            for kmer in ready:
                jobs = units.jobs(kmer)
                runner.submit(kmer, jobs)
                progress.submitted(kmer, jobs)
            ready = []
            for kmer, done in runner.finished():
                progress.running[len(kmer)] -= 1
                failed = [out.error for _, out in done if isinstance(out, FragmentFailure)]
                for _, out in done:
                    if isinstance(out, FragmentOutput):
                        decisions.from_store += out.from_store
                        decisions.computed += not out.from_store
                if failed:  # its supersets are never decided: the run raises once the rest is done and stored
                    failures.extend(failed)
                    continue
                ready.extend(screen.computed(kmer, units.increment(screen, kmer, done)))
                progress.computed[len(kmer)] += 1
            while (
                complete_through < (decisions.stopped or {}).get("order", plan.max_nbody)
                and not any(progress.running[k] for k in range(1, complete_through + 2))
                and not any(len(k) <= complete_through + 1 for k in ready)
            ):
                complete_through += 1
                progress.level_done(complete_through)
                if request.auto and complete_through == screen.ceiling and not decisions.stopped:
                    ready.extend(_next_order(decisions, complete_through))
            progress.tick()
    finally:
        runner.close()
    decisions.seconds = time.perf_counter() - began
    if failures:
        raise FragmentsFailed(failures, store=str(run.store_root))
    if request.auto and not decisions.stopped:
        decisions.stopped = {"order": plan.max_nbody, "reason": f"reached the input's max_nbody ({plan.max_nbody})"}
    progress.say_totals(decisions)
    return decisions


def _next_order(decisions: Decisions, order: int) -> list[tuple[int, ...]]:
    """``max_nbody="auto"``: level ``order`` is complete; go on to the next, or stop (and say why)."""
    screen, request = decisions.screen, decisions.request
    if order >= screen.max_nbody:
        decisions.stopped = {"order": order, "reason": f"reached the input's max_nbody ({order})"}
        return []
    totals = {k: screen.level_total(k) for k in range(2, order + 1)}
    estimate = es.next_level_estimate(totals, order)
    waiting = screen.waiting_for(order + 1)
    if not waiting:
        decisions.stopped = {"order": order, "reason": f"no {order + 1}-mer is a candidate"}
    elif estimate is not None and estimate < request.tolerance:
        decisions.stopped = {
            "order": order,
            "reason": f"the {order + 1}-body estimate |T{order}|^2/|T{order - 1}| = {estimate:.3g} Eh is below the "
            f"tolerance {request.tolerance:g} Eh",
            "estimate": estimate,
        }
        decisions.not_reached = {order + 1: waiting}
    if decisions.stopped:
        return []
    return screen.raise_ceiling(order + 1)


def _within(cutoffs: dict[int, float], distances) -> Any:
    """A k-mer is a candidate when every pair of its fragments is within the k-body cutoff (where there is one)."""

    def candidate(kmer: tuple[int, ...]) -> bool:
        cutoff = cutoffs.get(len(kmer))
        if cutoff is None:
            return True
        return all(distances[a - 1, b - 1] <= cutoff for a, b in itertools.combinations(kmer, 2))

    return candidate


class _Units:
    """A k-mer's calculations (its jobs), and its increment from their energies."""

    def __init__(self, plan: Plan, request: es.EnergyRequest, policy, task_config: dict, run_id: str = ""):
        from qcmb_dask.graph import fragment_job

        self.plan, self.policy, self.task_config, self.run_id = plan, policy, task_config, run_id
        self.mc = next(iter(plan.specifications))
        self.fragment_job = fragment_job
        self.vmfc = request.cheap is None and plan.bsse_type[0] == "vmfc"
        self.bsse = ["nocp"] if request.cheap else plan.bsse_type
        specifications = dict(plan.specifications)
        self.driver = plan.driver
        if request.cheap is not None:  # the cheap method's energies decide: its own model chemistry
            program, method = request.cheap
            spec = plan.specifications[self.mc]["specification"]
            cheap = {**spec, "model": {"method": method, "basis": None}, "keywords": {}, "driver": "energy"}
            self.mc = f"screening {method}"
            specifications[self.mc] = {"program": program, "specification": cheap}
            self.driver = "energy"
        #: the plan the decisions' jobs are made from: their one model chemistry
        self.unit_plan = dataclasses.replace(
            plan, specifications={self.mc: specifications[self.mc]}, driver=self.driver
        )
        self.tasks = task_maker(plan, specifications, self.driver)

    def jobs(self, kmer: tuple[int, ...]) -> list:
        calculations = unit_calculations(kmer, self.bsse, self.mc)
        return [
            self.fragment_job(self.unit_plan, task, self.task_config, self.policy, self.run_id)
            for task in self.tasks(calculations, self.mc)
        ]

    def increment(self, screen: es.EnergyScreen, kmer: tuple[int, ...], done: list[tuple]) -> float:
        """The k-mer's increment from its (job, output) pairs: nocp from its own energy, vmfc the signed sum."""
        energies = {(job.real, job.basis): float(out.properties["energy"]) for job, out in done}
        if not self.vmfc:
            return screen.nocp_increment(kmer, energies[kmer, kmer])
        return sum(
            (-1) ** (len(kmer) - size) * energies[real, kmer]
            for size in range(1, len(kmer) + 1)
            for real in itertools.combinations(kmer, size)
        )


class _InProcess:
    """Each k-mer's calculations in this process, one at a time (``cluster="sync"``, or a plan run here)."""

    def __init__(self, plan: Plan):
        self.parent = prepare_parent(plan.input.model.molecule)
        self.queue: list[tuple[tuple[int, ...], list]] = []

    def submit(self, kmer, jobs) -> None:
        self.queue.append((kmer, jobs))

    def busy(self) -> bool:
        return bool(self.queue)

    def finished(self):
        if self.queue:
            kmer, jobs = self.queue.pop(0)
            yield kmer, [(job, energy_of(self.parent, job)) for job in jobs]

    def close(self) -> None:
        self.queue.clear()


class _OnCluster:
    """Each k-mer's calculations as tasks on the session's client, lower orders first; a k-mer is finished when
    all of its are."""

    def __init__(self, session, plan: Plan):
        from distributed import as_completed

        self.client, self.resources = session.client, session.task_resources
        self.parent = self.client.submit(prepare_parent, plan.input.model.molecule, pure=False)
        self.completed = as_completed(loop=self.client.loop)  # this client, whether or not it is the default one
        self.units: dict[str, tuple] = {}  # future key -> (kmer, its futures, jobs)
        self.left: dict[tuple, int] = {}
        self.names = itertools.count()

    def submit(self, kmer, jobs) -> None:
        futures = [
            self.client.submit(
                energy_of,
                self.parent,
                job,
                key=f"qcmb-screen-{next(self.names)}-{self.parent.key}",
                pure=False,
                priority=-len(kmer),
                resources=self.resources,
            )
            for job in jobs
        ]
        self.left[kmer] = len(futures)
        for future in futures:
            self.units[future.key] = (kmer, futures, jobs)
        self.completed.update(futures)

    def busy(self) -> bool:
        return bool(self.left)

    def finished(self):
        batch = self.completed.next_batch(block=True) if self.left else []
        for future in batch:
            kmer, futures, jobs = self.units.pop(future.key)
            self.left[kmer] -= 1
            if self.left[kmer]:
                continue
            del self.left[kmer]
            yield kmer, [(job, self._output(one, job)) for one, job in zip(futures, jobs)]

    @staticmethod
    def _output(future, job):
        """Its FragmentOutput or FragmentFailure; where Dask gave up on it (its worker lost on every try, or the
        task itself raised), a failure that says so."""
        from distributed import KilledWorker

        if future.status in ("finished", "lost"):  # lost with its worker after it finished: Dask computes it again
            return future.result()
        if future.status != "error":
            from concurrent.futures import CancelledError

            raise CancelledError(f"qcmb_dask: {future.key} was {future.status} (the scheduler gone, or a cancel)")
        error = future.exception()
        if isinstance(error, KilledWorker):
            return FragmentFailure(job.label, job.nbody, worker_lost_error(job, error.allowed_failures + 1, None))
        return FragmentFailure(job.label, job.nbody, fragment_error(job, type(error).__name__, str(error)))

    def close(self) -> None:
        held = [self.parent] + [future for _, futures, _ in self.units.values() for future in futures]
        self.client.cancel(held)


class _Progress:
    """Candidates, computed and dropped k-mers per order: said as orders complete and every few seconds, and on a
    cluster published for the live page (a run of its own there, its levels the calculations sent so far)."""

    def __init__(self, reporter, screen: es.EnergyScreen, client, run_id: str, bsse_types):
        self.reporter, self.screen, self.client, self.run_id = reporter, screen, client, run_id
        self.bsse_types = list(bsse_types)
        self.running: Counter = Counter()
        self.computed: Counter = Counter()
        self.calculations: Counter = Counter()  # n-body level -> calculations sent
        self.said = time.monotonic()
        self.started = time.time()

    def submitted(self, kmer: tuple[int, ...], jobs: list) -> None:
        self.running[len(kmer)] += 1
        for job in jobs:
            self.calculations[job.nbody] += 1

    def counts(self) -> dict[int, dict[str, int]]:
        """order -> candidates, computed, dropped and running k-mers."""
        dropped = Counter(len(kmer) for kmer in self.screen.dropped)
        counts = {}
        for order in range(2, self.screen.max_nbody + 1):
            kept = len(self.screen.kept.get(order, ()))
            candidates = kept + dropped[order] + self.screen.waiting_for(order)
            if self.screen.measure == es.OWN:
                candidates += self.running[order]
            counts[order] = {
                "candidates": candidates,
                "computed": self.computed[order],
                "dropped": dropped[order],
                "running": self.running[order],
            }
        return counts

    @staticmethod
    def line(counts: dict[int, dict[str, int]]) -> str:
        parts = [
            f"{order}-body {c['candidates']:,} candidates: {c['computed']:,} computed, {c['dropped']:,} dropped, "
            f"{c['running']:,} running"
            for order, c in counts.items()
            if c["candidates"]
        ]
        return "; ".join(parts) or "monomers running"

    def tick(self) -> None:
        if time.monotonic() - self.said >= PROGRESS_EVERY_S:
            self.show("")

    def level_done(self, order: int) -> None:
        if order >= 2:
            self.show(f"{order}-body decided. ")

    def show(self, prefix: str | None) -> None:
        """Say the counts (counted once) after ``prefix`` (None: say nothing), and publish them for the live page
        where there is one."""
        self.said = time.monotonic()
        counts = self.counts()
        line = self.line(counts)
        if prefix is not None:
            self.reporter.say(f"qcmb_dask: screening: {prefix}{line}")
        if self.client is None:
            return
        from qcmb_dask.diagnostics import run_events

        levels = {str(k): n for k, n in sorted(self.calculations.items())}
        run_events.publish_run(self.client, self.run_id, levels, self.bsse_types, self.started)
        orders = {str(order): c for order, c in counts.items()}
        run_events.publish(self.client, [self.run_id, "screening"], {"line": line, "orders": orders})

    def say_totals(self, decisions: Decisions) -> None:
        self.show(None)  # the page's last counts; the lines said them as the last order was decided
        stopped = decisions.stopped
        if stopped:
            self.reporter.say(
                f"qcmb_dask: screening: the expansion stops at {stopped['order']}-body: {stopped['reason']}"
            )
        self.reporter.say(
            f"qcmb_dask: screening decided in {decisions.seconds:.1f} s ({decisions.computed} calculation(s) "
            f"computed, {decisions.from_store} from the store); now the kept k-mers are assembled"
        )


def through_order(normalized, kept: dict[int, list]):
    """The input with ``max_nbody`` the order the decisions stopped at (``kept``'s highest), where that is below
    the input's (``max_nbody="auto"``): the result's levels end where the expansion did."""
    from qcmb_dask.qcmanybody_adapter import NormalizedInput

    model = normalized.model
    keywords = model.specification.keywords
    top = max(kept)
    if keywords.max_nbody is not None and top >= keywords.max_nbody:
        return normalized
    specification = model.specification.model_copy(update={"keywords": keywords.model_copy(update={"max_nbody": top})})
    return NormalizedInput(model.model_copy(update={"specification": specification}), normalized.result_schema_version)


def with_report(result, decisions: Decisions):
    """``result`` with the decisions' report in ``extras["qcmb_dask"]["screening"]["energy"]``."""
    from qcmb_dask.diagnostics import provenance

    screening = (provenance.record_of(result) or {}).get("screening") or {}
    return provenance.with_record(result, {"screening": {**screening, "energy": decisions.report()}})
