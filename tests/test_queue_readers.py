"""Each batch system's reader against its command's recorded output (:mod:`qcmb_dask.clusters.queues`)."""

from __future__ import annotations

from qcmb_dask.clusters import queue_state
from qcmb_dask.clusters.queues import ENDED, PENDING, RUNNING, slurm

SQUEUE = """\
101|PENDING|Priority
102|PENDING|Resources
103|RUNNING|None
104|REQUEUED|BeginTime
105|PREEMPTED|None
106|TIMEOUT|None
garbage line
"""


def test_squeue_lines_read_as_phases_with_reasons():
    found = slurm.parse(SQUEUE)
    assert set(found) == {"101", "102", "103", "104", "105", "106"}
    assert found["101"].phase == PENDING and found["101"].reason == "Priority"
    assert found["103"].phase == RUNNING and found["103"].reason == ""
    assert found["104"].phase == PENDING and found["104"].preempted
    assert found["105"].phase == ENDED and found["105"].preempted
    assert found["106"].phase == ENDED and not found["106"].preempted


def test_summary_counts_pending_by_reason_running_and_ended():
    found = slurm.parse(SQUEUE)
    line = queue_state.summary(found, ["101", "102", "103", "106", "999"])
    assert line == "2 pending (1 Priority, 1 Resources), 1 running, 2 ended"
