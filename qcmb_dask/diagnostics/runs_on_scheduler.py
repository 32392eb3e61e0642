"""What the live page shows of every run on a scheduler, kept as it happens by a scheduler plugin.

The scheduler's event log keeps the last ``distributed.admin.low-level-log-length`` events per topic (1,000),
so counting fragments by rescanning it undercounts any run of more fragments than that. The plugin sees each
event as it is logged and keeps, per run: every fragment's latest end (a fragment that ran twice counts once),
counts per n-body level updated as they change, fragments running now (from the scheduler's task transitions),
and the most recent fragment ends for the timeline plot. Memory: one small tuple per fragment of the
:data:`MAX_RUNS` latest runs.

Loaded on the scheduler (by the preload of schedulers qcmb_dask starts, or registered by the client on a
scheduler of yours): it imports no client code.
"""

from __future__ import annotations

import collections
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

from qcmb_dask import keys
from qcmb_dask.diagnostics.run_events import unbatch

#: runs kept (the oldest is forgotten first)
MAX_RUNS = 50
#: fragment ends per run kept for the timeline plot (the latest)
TIMELINE_LENGTH = 4000


class RunTally:
    """One run's fragments: counts per level, running now, the latest ends."""

    def __init__(self):
        #: label -> (nbody, ok, from_store) of its latest end
        self.ends: dict[str, tuple[int, bool, bool]] = {}
        #: nbody -> [done, failed, from_store]
        self.counts: dict[int, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
        #: nbody -> fragments running now
        self.running: dict[int, int] = collections.defaultdict(int)
        self.timeline: collections.deque = collections.deque(maxlen=TIMELINE_LENGTH)
        #: worker -> its row in the timeline plot
        self.workers: dict[str, int] = {}
        #: scheduler events that carried this run's fragment ends (workers batch them)
        self.events = 0

    def fragment_ended(self, record: dict[str, Any]) -> None:
        label, nbody = record["label"], int(record["nbody"])
        previous = self.ends.get(label)
        if previous is not None:  # ran again (its worker was lost after it ended): its last end counts
            self._count(previous, -1)
        end = (nbody, bool(record["ok"]), bool(record["from_store"]))
        self.ends[label] = end
        self._count(end, +1)
        worker = str(record.get("worker"))
        row = self.workers.setdefault(worker, len(self.workers))
        self.timeline.append((record.get("start"), record.get("stop"), row, nbody, end[1]))

    def _count(self, end: tuple[int, bool, bool], sign: int) -> None:
        nbody, ok, from_store = end
        tally = self.counts[nbody]
        tally[0 if ok else 1] += sign
        tally[2] += sign * (ok and from_store)


class RunsOnScheduler(SchedulerPlugin):
    """Keeps a :class:`RunTally` per run from the fragment events and the fragments' task transitions."""

    name = keys.RUNS_PLUGIN
    #: registered once: a second run's client finds it there
    idempotent = True

    def __init__(self):
        self.runs: collections.OrderedDict[str, RunTally] = collections.OrderedDict()

    def tally(self, run: str) -> RunTally:
        tally = self.runs.get(run)
        if tally is None:
            tally = self.runs[run] = RunTally()
            while len(self.runs) > MAX_RUNS:
                self.runs.popitem(last=False)
        return tally

    def log_event(self, topic: str, msg: Any) -> None:
        if topic != keys.FRAGMENT_TOPIC:
            return
        runs = set()
        for record in unbatch(msg):
            if record.get("run") is not None and "label" in record:
                self.tally(record["run"]).fragment_ended(record)
                runs.add(record["run"])
        for run in runs:
            self.tally(run).events += 1

    def transition(self, key, start: str, finish: str, *args, **kwargs) -> None:
        if start != "processing" and finish != "processing":
            return
        parts = keys.fragment_key_run(key)
        if parts is None:
            return
        run, nbody = parts
        self.tally(run).running[nbody] += 1 if finish == "processing" else -1


def of(scheduler) -> RunsOnScheduler | None:
    """The scheduler's plugin, where it has one."""
    plugin = scheduler.plugins.get(keys.RUNS_PLUGIN)
    return plugin if isinstance(plugin, RunsOnScheduler) else None


def dask_setup(scheduler) -> None:
    """A scheduler preload (schedulers qcmb_dask starts load it, :data:`~qcmb_dask.keys.RUNS_PRELOAD`): the plugin
    from the start, so that the live page counts every run's fragments."""
    scheduler.add_plugin(RunsOnScheduler())
