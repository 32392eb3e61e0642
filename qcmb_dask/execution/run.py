"""One run, set up once: what ``compute``, ``compute_many`` and ``optimize`` share.

    run = Run(cluster, cache, harnesses, options, callback=callback)   # backend, store, programs, display
    plan = make_plan(input, ...)                                          # planning: nothing runs
    run.admit([plan])                  # the backend's checks, programs installed, store writable, the preflight
    run.consider(plan.total_cost(), plan)                                 # what the backend may size itself by
    with run.session() as session:                                        # connected, set up, interruptible
        result, graph = run.run_plan(session, plan)

The backend (:mod:`qcmb_dask.clusters`) only connects; everything a run does on a client (its harnesses, its
programs imported on workers kept between runs, one fragment per process where asked) is done here.
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from qcmb_dask import clusters, keys, preflight, programs, store
from qcmb_dask.diagnostics import provenance, runlog
from qcmb_dask.diagnostics.progress import Reporter
from qcmb_dask.errors import FragmentsFailed, InvalidInput, summary_lines
from qcmb_dask.execution import devices
from qcmb_dask.execution.sessions import open_session
from qcmb_dask.interrupts import as_interrupts
from qcmb_dask.options import Options, check_harnesses
from qcmb_dask.planning import cost_history, validate
from qcmb_dask.planning.plan import Plan
from qcmb_dask.worker.analysis import Outcome, PartialResult
from qcmb_dask.worker.fragment import GPU_OUT_OF_MEMORY_CHOICES, RunPolicy

logger = logging.getLogger("qcmb_dask")

#: client -> the programs its workers imported already (a cluster kept between runs is warmed up once)
_WARMED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Run:
    """A run's set-up, in the order it must happen; the entry points add what is theirs (one input or many, the
    optimizer's loop) around it."""

    def __init__(
        self,
        cluster: Any,
        cache: Any,
        harnesses: Sequence,
        options: Options,
        *,
        callback: Callable[[str, int, int, int], None] | None = None,
        reporter: Reporter | None = None,
    ):
        from qcmb_dask.worker.warmup import prime_in_background

        self.began, self.began_epoch = time.perf_counter(), time.time()
        check_harnesses(harnesses)
        self.options = options
        self.harnesses = tuple(harnesses)
        self.store_root = store.location(cache)
        self.backend = clusters.backend_for(cluster)
        self.backend.probe()
        if self.backend.programs_run_here:
            prime_in_background()  # QCEngine describes this machine while the plan is made
        programs.register(harnesses)
        self.reporter = reporter if reporter is not None else Reporter(options.progress, callback=callback)
        self.policy = RunPolicy(
            str(self.store_root) if self.store_root else None,
            options.timeout_per_task,
            options.escalate,
            gpu_out_of_memory=gpu_settings_checked(),
        )
        stream_settings_checked()
        self.ncalculations = 0

    def admit(self, plans: Sequence[Plan], *, each_alone: bool = False) -> dict[int, InvalidInput]:
        """Every check that needs the plans, before anything is submitted: the backend's, the programs installed
        where they run here, the store made and writable, and the preflight (:mod:`qcmb_dask.preflight`).
        ``each_alone``: a plan the preflight refuses is returned (position -> refusal) instead of raised."""
        self.ncalculations = sum(len(plan) for plan in plans)
        self.backend.check(self.options, self.ncalculations)
        if self.backend.programs_run_here:  # elsewhere the programs may live only on the workers (a module load)
            for plan in plans:
                validate.check_programs(validate.plan_requests(plan), installed=True)
        if self.store_root is not None:
            store.make_ready(self.store_root)
        refused: dict[int, InvalidInput] = {}
        if self.backend.programs_run_here:
            for position, plan in enumerate(plans):
                try:
                    preflight.check(plan, self.store_root, self.options.on_error, announce=logger.info)
                except InvalidInput as err:
                    if not each_alone:
                        raise
                    refused[position] = err
        return refused

    def consider(self, estimate: float, plans: Sequence[Plan]) -> None:
        """What the run costs (one-core seconds) and which programs it runs, for backends that choose or size by
        them; from here on the backend speaks through the run's display."""
        used = sorted({task.program.lower() for plan in plans for task in plan})
        # a fragment that goes to a GPU is not a CPU worker's to fit in its walltime (its estimate there is the GPU's)
        longest = max(
            ((task.cost, task.label) for plan in plans for task in devices.on_cpu_for_sure(plan)), default=None
        )
        self.backend.consider(estimate, used, self.store_root, longest=longest)
        self.backend.announce = self.reporter.say
        self.backend.wants_gpus = devices.wants_gpus(plans)
        self.backend.needs_gpus = devices.needs_gpus(plans)

    @contextlib.contextmanager
    def session(self) -> Iterator:
        """Connected and set up, Ctrl-C and SIGTERM turned into a clean stop; closes what the backend opened."""
        with as_interrupts(), self.backend.connect(self.options, self.ncalculations, self._set_up) as connection:
            if connection.worker_resources and connection.client is not None:
                from qcmb_dask.worker.plugins import ProcessSettings

                plugin = ProcessSettings(resources=connection.worker_resources)
                connection.client.register_plugin(plugin, name=keys.ONE_FRAGMENT_PLUGIN)
            yield open_session(connection)

    def _set_up(self, client) -> None:
        """What the run needs on a client before its first task: its harnesses on every worker (joining ones
        too); on a cluster kept between runs, its programs imported by every worker now, in parallel, rather than
        in each worker's first fragment."""
        install_harnesses(client, self.harnesses)
        if self.backend.keeps_workers:
            from qcmb_dask.worker.warmup import import_programs

            warmed = _WARMED.setdefault(client, set())
            missing = sorted(set(self.backend.programs) - warmed)
            if missing:
                client.run(import_programs, missing)
                warmed |= set(missing)

    def run_plan(self, session, plan: Plan, reporter: Reporter | None = None, began_epoch: float | None = None):
        """One input's graph on an open session, to its result (as :meth:`finish` gives it) and the graph: the
        core of ``compute``, and of every point of an optimization (one session for all its points)."""
        from qcmb_dask.graph import build

        reporter = reporter if reporter is not None else self.reporter
        placed = devices.placement(plan, session, self.options.processes_per_gpu, self.store_root)
        if placed is not None and placed.summary():
            reporter.say(f"qcmb_dask: {placed.summary()}")
        graph = build(
            plan,
            task_config=session.resources.task_config(retries=self.options.retries),
            policy=self.policy,
            ordering=self.options.ordering,
            workers=session.resources.n_workers,
            placement=placed,
            task_resources=session.task_resources,
        )
        if not graph.batches and len(plan) >= WHOLE_ANALYSIS_NOTE:
            reporter.say(whole_analysis_note(plan))
        try:
            outcome = session.run(graph, reporter, plan.bsse_type)
        finally:
            runlog.remember(reporter.log)
            threads = session.resources.threads_per_task
            # unplaced fragments that may have run on this process's GPU (device gpu/auto, in process) teach nothing
            timed = plan.tasks if placed is not None else devices.on_cpu_for_sure(plan, auto_too=True)
            measured = cost_history.measured_ratios(
                timed,
                reporter.log.records if reporter.log is not None else (),
                threads,
                placed.devices if placed is not None else None,
                self.options.processes_per_gpu,
            )
            cost_history.record(self.store_root, measured)
        record = provenance.run_record(
            run_id=graph.run_id,
            cluster=session.describe(),
            stats=outcome.stats,
            store_root=self.store_root,
            began=self.began_epoch if began_epoch is None else began_epoch,
            log=reporter.log,
            level_labels=plan.level_labels,
        )
        return self.finish(outcome, record, reporter), graph

    def finish(self, outcome: Outcome, record: dict, reporter: Reporter):
        """Say where results came from; the result, a PartialResult (both with ``record`` in their extras), or
        FragmentsFailed."""
        reporter.stats(outcome.stats, self.store_root)
        if not outcome.failures:
            return provenance.with_record(outcome.result, record)
        if self.options.on_error == "partial":
            highest = outcome.levels[max(outcome.levels)] if outcome.levels else None
            extras = {provenance.EXTRAS_KEY: record}
            partial = PartialResult(highest, outcome.levels, outcome.failures, outcome.stats, extras)
            reporter.say(
                f"qcmb_dask: {len(outcome.failures)} fragment(s) failed; returning the expansion through "
                f"{partial.nbody}-body (on_error='partial'):\n" + "\n".join(summary_lines(outcome.failures))
            )
            return partial
        store_root = self.store_root
        raise FragmentsFailed(
            outcome.failures, store=str(store_root) if store_root else False, levels_done=sorted(outcome.levels)
        )

    def seconds(self) -> float:
        return time.perf_counter() - self.began


#: from this many calculations, a run whose analysis reads every fragment result in one process says so
#: (``cluster_results="all"``)
WHOLE_ANALYSIS_NOTE = 10_000


def whole_analysis_note(plan: Plan) -> str:
    """What a run that keeps every calculation's whole result costs: its analysis reads them all in one process."""
    return (
        f"qcmb_dask: cluster_results='all' keeps every calculation's whole AtomicResult (a few kB to MBs each), so "
        f"the analysis reads all {len(plan):,} of them in one worker process, at once, after the last is in; "
        "without it the results are summed as they arrive."
    )


def stream_settings_checked() -> None:
    """``qcmb_dask.stream.batch-size``, ``stream.ahead`` and ``early-levels-tolerance``, checked before anything
    starts (the graph and the streamed submission read them)."""
    from qcmb_dask.errors import InvalidArgument
    from qcmb_dask.graph import early_levels_tolerance
    from qcmb_dask.options import setting

    for key, kind, meaning in (
        ("stream.batch-size", int, "calculations per batch, a whole number of at least 1 (default 500)"),
        ("stream.ahead", float, "calculations kept submitted per worker thread, a number of at least 1 (default 4)"),
    ):
        value = setting(key)
        try:
            usable = not isinstance(value, bool) and kind(value) >= 1 and (kind is float or float(value) == int(value))
        except (TypeError, ValueError):
            usable = False
        if not usable:
            raise InvalidArgument(f"qcmb_dask.{key}={value!r}: expected {meaning}.")
    early_levels_tolerance()


def gpu_settings_checked() -> str:
    """The ``qcmb_dask.gpu`` settings the workers read, checked here before anything starts (a worker that cannot
    read them would fail as it starts); returns ``out-of-memory``, what a fragment that ran out of GPU memory is
    retried with."""
    from qcmb_dask.errors import InvalidArgument
    from qcmb_dask.options import setting

    fraction = setting("gpu.memory-fraction")
    try:
        usable = 0 < float(fraction) <= 1 and not isinstance(fraction, bool)
    except (TypeError, ValueError):
        usable = False
    if not usable:
        raise InvalidArgument(
            f"qcmb_dask.gpu.memory-fraction={fraction!r}: expected the share of a card's memory its fragment "
            "processes may take together, a number above 0 and at most 1 (default 0.9)."
        )
    choice = str(setting("gpu.out-of-memory", "alone")).lower()
    if choice not in GPU_OUT_OF_MEMORY_CHOICES:
        raise InvalidArgument(
            f"qcmb_dask.gpu.out-of-memory={choice!r}: expected 'alone' (retried with its card to itself) or 'cpu' "
            "(retried on its worker's CPU)."
        )
    return choice


def install_harnesses(client, harnesses: Sequence) -> None:
    """Register user harnesses on every worker, now and on workers that join later."""
    if harnesses:
        from qcmb_dask.worker.plugins import HarnessPlugin

        client.register_plugin(HarnessPlugin(list(harnesses)), name=keys.HARNESS_PLUGIN)


def records_of(reporter: Reporter) -> list:
    """The fragment records a run's display kept (its timeline)."""
    return list(reporter.log.records) if reporter.log is not None else []
