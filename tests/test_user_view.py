"""What a user watches: fragment progress and its ETA, callback=, the /qcmb page (also in headless
Chromium during a real run), the timeline and the plots."""

import io
import json
import shutil
import subprocess
import threading
import time
import urllib.request

import pytest

import qcmb_dask
from qcmb_dask.diagnostics.plots import convergence_data, report, summary_rows, timeline
from qcmb_dask.diagnostics.progress import Reporter
from qcmb_dask.diagnostics.runlog import RunLog
from qcmb_dask.qcmanybody_adapter import hartree_to_kcal

from .conftest import NOCP, faulty_input, mbe_input, qcmanybody_reference, water_grid
from .fake_programs import FaultyHarness, calls

CP_NOCP = {"bsse_type": ["cp", "nocp"]}


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_the_eta_is_the_cost_left_at_the_pace_so_far(monkeypatch):
    progress = RunLog({1: 2, 2: 1}, {"a": 1.0, "b": 1.0, "c": 2.0})
    assert progress.eta() is None  # nothing done: no pace yet
    clock = [100.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    progress.started = 100.0
    clock[0] = 110.0
    assert progress.add("a", 1) and not progress.add("a", 1)  # a fragment that ends twice counts once
    assert progress.eta() == pytest.approx(10.0 * 3.0 / 1.0)
    progress.add("b", 1)
    progress.add("c", 2, ok=False)
    assert progress.eta() == 0.0
    assert progress.line() == "qcmb_dask: 1-body 2/2 | 2-body 1/1 | 3/3 done, 1 failed, ETA 0 s"


def test_the_run_log_keeps_each_record_once_and_gives_it_back_as_dicts_or_columns():
    from qcmb_dask.diagnostics.runlog import rows

    log = RunLog({1: 2, 2: 1}, {"a": 1.0, "b": 1.0, "ab": 2.0})
    assert log.add("b", 1, start=1.0, stop=2.5, worker="w1")
    assert not log.add("b", 1, start=9.0, stop=9.5, worker="w2")  # its worker was lost after it ended
    assert log.add("ab", 2, ok=False, worker="w1")
    assert log.add("unplanned", 1, from_store=True, start=3.0, stop=4.0)
    expected = [
        {"label": "b", "nbody": 1, "ok": True, "from_store": False, "start": 1.0, "stop": 2.5, "worker": "w1"},
        {"label": "ab", "nbody": 2, "ok": False, "from_store": False, "start": None, "stop": None, "worker": "w1"},
        {"label": "unplanned", "nbody": 1, "ok": True, "from_store": True, "start": 3.0, "stop": 4.0,
         "worker": None},
    ]  # fmt: skip
    assert list(log.records) == expected and len(log.records) == 3
    assert log.records[-1] == expected[-1] and log.records[1:] == expected[1:]
    assert rows(log.columns()) == expected == rows(expected)
    assert log.last_stop(["b", "unplanned"]) == 4.0
    assert log.last_stop(["b", "ab"]) is None  # ended, at no known time
    assert log.last_stop(["b", "a"]) is None  # not ended
    assert log.done_cost == 3.0 and (log.failed, log.from_store) == (1, 1)


def test_a_terminal_gets_a_live_line_that_level_messages_do_not_garble():
    terminal = FakeTerminal()
    reporter = Reporter("auto", stream=terminal)
    reporter.start({1: 1, 2: 1}, {"a": 1.0, "b": 1.0})
    reporter.fragment("a", 1)
    reporter.say("qcmb_dask: 1-body result ready")
    reporter.fragment("b", 2)
    reporter.finish()
    out = terminal.getvalue()
    assert "\r\033[K" in out  # redrawn in place
    assert "1-body 1/1 | 2-body 0/1 | 1/2 done" in out
    assert "\r\033[Kqcmb_dask: 1-body result ready\n" in out  # the bar is cleared before a line
    assert out.endswith("\r\033[K")  # and at the end
    quiet = io.StringIO()  # not a terminal: "auto" shows nothing
    silent = Reporter("auto", stream=quiet)
    silent.start({1: 1}, {"a": 1.0})
    silent.fragment("a", 1)
    silent.say("hello")
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("where", ["sync", "workers"])
def test_callback_gets_every_fragment_once_with_running_counts(where, local_client):
    data = mbe_input(3, keywords=CP_NOCP)
    seen = []
    cluster = "sync" if where == "sync" else local_client
    qcmb_dask.compute(data, cluster, progress=False, callback=lambda *args: seen.append(args))
    plan = qcmb_dask.plan(data)
    labels = {t.label: t.nbody for t in plan}
    assert sorted(label for label, *_ in seen) == sorted(labels)
    assert [done for _, _, done, _ in seen] == list(range(1, len(plan) + 1))
    assert {total for *_, total in seen} == {len(plan)}
    assert all(labels[label] == nbody for label, nbody, *_ in seen)
    records = qcmb_dask.timeline()
    assert len(records) == len(plan) and all(r["stop"] >= r["start"] for r in records)
    if where == "workers":
        assert len({r["worker"] for r in records}) == 2  # both workers of the cluster


def test_plots_and_report_show_the_results_numbers(tmp_path, local_client):
    data = mbe_input(3, keywords=CP_NOCP)
    result = qcmb_dask.compute(data, local_client, progress=False, report=str(tmp_path / "report.html"))
    series = convergence_data(result)
    assert set(series) == {"cp", "nocp"}
    assert series["cp"][-1][1] == pytest.approx(result.properties.cp_corrected_interaction_energy * hartree_to_kcal())
    assert [n for n, _ in series["nocp"]] == [1, 2, 3]
    assert len(summary_rows(result)) == 6
    page = (tmp_path / "report.html").read_text()
    assert "Bokeh" in page and f"{result.properties.nocp_corrected_interaction_energy:.10f}" in page
    assert "Fragment timeline" in page  # the timeline is in the report: records came from the workers
    figure = timeline(qcmb_dask.timeline())
    assert len(figure.renderers[0].data_source.data["label"]) == len(qcmb_dask.plan(data))
    report(result, None, str(tmp_path / "no-timeline.html"))
    assert "Fragment timeline" not in (tmp_path / "no-timeline.html").read_text()


def _page_data(client) -> dict:
    link = client.dashboard_link.rsplit("/", 1)[0] + "/qcmb/data.json"
    with urllib.request.urlopen(link, timeout=10) as response:
        return json.load(response)


def _render_in_chromium(url: str) -> str:
    """The page's DOM after its script ran (headless Chromium, as Debian packages it)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    out = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=4000", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _rows(dom: str) -> dict:
    """nbody -> {class: text} of the page's level table, parsed from the DOM."""
    from html.parser import HTMLParser

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.row, self.cls = {}, None, None

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "tr" and "data-nbody" in attrs:
                self.row = self.rows.setdefault(int(attrs["data-nbody"]), {})
            elif tag == "td" and self.row is not None:
                self.cls = attrs.get("class")

        def handle_data(self, data):
            if self.row is not None and self.cls:
                self.row[self.cls] = data

        def handle_endtag(self, tag):
            if tag == "td":
                self.cls = None

    parser = Rows()
    parser.feed(dom)
    return parser.rows


@pytest.mark.slow
def test_the_live_page_follows_a_real_run(local_client, tmp_path):
    log = tmp_path / "calls.log"
    data = faulty_input(3, keywords=CP_NOCP)
    plan = qcmb_dask.plan(data)
    sizes = {}
    for task in plan:
        sizes[task.nbody] = sizes.get(task.nbody, 0) + 1
    outcome = {}
    runner = threading.Thread(
        target=lambda: outcome.setdefault(
            "result",
            qcmb_dask.compute(
                data, local_client, harnesses=[FaultyHarness(extras={"log": str(log), "sleep": 1.5})], progress=False
            ),
        )
    )
    runner.start()
    deadline = time.time() + 120
    while calls(log, "done") < 2 and time.time() < deadline:
        time.sleep(0.05)
    middle = _page_data(local_client)  # workers report fragment ends every half second: wait for one report
    while sum(level["done"] for level in middle["levels"]) == 0 and time.time() < deadline:
        time.sleep(0.1)
        middle = _page_data(local_client)
    page = local_client.dashboard_link.rsplit("/", 1)[0] + "/qcmb"
    dom_mid_run = _render_in_chromium(page)
    still_running = runner.is_alive()
    runner.join(timeout=300)
    result = outcome["result"]

    # mid-run: the plan's levels, some done, some running, none of it made up
    assert {level["nbody"]: level["total"] for level in middle["levels"]} == sizes
    done = sum(level["done"] for level in middle["levels"])
    assert 1 <= done < len(plan)
    assert sum(level["running"] for level in middle["levels"]) >= 1

    # in Chromium while the run goes on, as a user sees it: the plan's levels, part of the work done
    assert still_running, "the run ended before Chromium rendered the page: nothing was seen mid-run"
    rows = _rows(dom_mid_run)
    assert {nbody: int(row["total"]) for nbody, row in rows.items()} == sizes
    assert 1 <= sum(int(row["done"]) for row in rows.values()) < len(plan)
    assert f"of {len(plan)} calculations finished" in dom_mid_run

    # and at the end
    dom = _render_in_chromium(page)
    rows = _rows(dom)
    assert {nbody: int(row["total"]) for nbody, row in rows.items()} == sizes
    assert {nbody: int(row["done"]) for nbody, row in rows.items()} == sizes
    assert all(row["nfailed"] == "0" and row["running"] == "0" for row in rows.values())
    top = max(rows)
    for bt in ("cp", "nocp"):
        expected = getattr(result.properties, f"{bt}_corrected_interaction_energy") * hartree_to_kcal()
        assert rows[top][f"ie-{bt}"] == f"{expected:.4f}"
    assert f"{len(plan)} of {len(plan)} calculations finished" in dom
    # the Bokeh figures drew every fragment on the timeline, and the runs list has this run
    assert 'data-rendered="yes"' in dom and f'data-bars="{len(plan)}"' in dom
    assert result.extras["qcmb_dask"]["run_id"] in dom


@pytest.mark.slow
def test_the_page_counts_every_fragment_of_a_run_of_thousands():
    """3,003 fragments (77 waters, nocp 2-body), each ending in an event of its own (it sleeps past the workers'
    batching interval): the scheduler's event log keeps 1,000 of them, the page's counts are still all right."""
    import dask
    from distributed import Client, LocalCluster

    from qcmb_dask.clusters import scheduler_settings
    from qcmb_dask.keys import FRAGMENT_TOPIC

    from .fake_programs import SleepyHarness

    data = mbe_input(2, keywords={"bsse_type": "nocp", "max_nbody": 2}, program="sleepy")
    data["molecule"] = water_grid(77)
    harness = SleepyHarness(extras={"sleep": 0.08, "fail_every": 10})
    qcmb_dask.programs.register([harness])
    settings = {**scheduler_settings(), "qcmb_dask.fragment-event-interval": "50ms"}
    with (
        dask.config.set(settings),
        LocalCluster(n_workers=8, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        result = qcmb_dask.compute(data, client, harnesses=[harness], on_error="partial", progress=False)
        ntotal, nfailed = 77 + 77 * 76 // 2, len(result.failures)
        page = _page_data(client)
        logged = len(client.get_events(FRAGMENT_TOPIC))
        dom = _render_in_chromium(client.dashboard_link.rsplit("/", 1)[0] + "/qcmb")
    assert 100 < nfailed < 600  # about one dimer in ten failed, on purpose
    assert page["events"] >= 0.95 * ntotal and logged == 1000  # (nearly) an event each; the log keeps 1,000
    rows = _rows(dom)
    assert {n: int(row["total"]) for n, row in rows.items()} == {1: 77, 2: ntotal - 77}
    assert {n: int(row["done"]) for n, row in rows.items()} == {1: 77, 2: ntotal - 77 - nfailed}
    assert {n: int(row["failed" if n == 2 else "nfailed"]) for n, row in rows.items()} == {1: 0, 2: nfailed}
    assert f"{ntotal} of {ntotal} calculations finished ({nfailed} failed)" in dom


requires_chromium = pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="no chromium here (apt-get install chromium; .ci/run installs it)",
)
test_the_live_page_follows_a_real_run = requires_chromium(test_the_live_page_follows_a_real_run)
test_the_page_counts_every_fragment_of_a_run_of_thousands = requires_chromium(
    test_the_page_counts_every_fragment_of_a_run_of_thousands
)


def test_the_answer_is_qcmanybodys_whatever_is_watching(local_client):
    data = mbe_input(3, keywords=NOCP)
    ours = qcmb_dask.compute(data, local_client, progress=True, callback=lambda *a: None)
    assert ours.return_result == pytest.approx(qcmanybody_reference(data).return_result, abs=1e-9)
