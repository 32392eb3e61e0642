"""A result says how it was made, and keeps saying it once saved: extras['qcmb_dask'], timeline() from a file,
PartialResult through JSON, and the table and report commands on saved results."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import qcmb_dask
from qcmb_dask.cli import main
from qcmb_dask.diagnostics.results import COLUMNS

from .conftest import mbe_input
from .fake_programs import DimersFailHarness


def test_the_result_records_where_and_how_it_ran_and_keeps_it_through_json(tmp_path):
    store = tmp_path / "store"
    result = qcmb_dask.compute(mbe_input(3, keywords={"bsse_type": "nocp"}), "sync", cache=store, progress=False)
    record = result.extras["qcmb_dask"]
    assert record["version"] == qcmb_dask.__version__
    assert record["cluster"]["kind"] == "sync" and record["cluster"]["workers"] == 1
    assert (record["computed"], record["from_store"], record["store"]) == (7, 0, str(store))
    assert set(record["levels"]) == {"1", "2", "3"}
    assert [record["levels"][k]["ncalculations"] for k in "123"] == [3, 6, 7]
    assert all(
        0 <= level["ready_s"] <= level["reported_s"] <= record["wall_time_s"] for level in record["levels"].values()
    )
    assert len(record["run_id"]) == 12

    saved = tmp_path / "r.json"
    saved.write_text(result.model_dump_json())
    assert qcmb_dask.timeline(saved) == qcmb_dask.timeline() == record["timeline"]
    assert qcmb_dask.load_result(saved).extras["qcmb_dask"] == json.loads(json.dumps(record))

    again = qcmb_dask.compute(mbe_input(3, keywords={"bsse_type": "nocp"}), "sync", cache=store, progress=False)
    assert (again.extras["qcmb_dask"]["computed"], again.extras["qcmb_dask"]["from_store"]) == (0, 7)
    assert again.extras["qcmb_dask"]["run_id"] != record["run_id"]


def test_a_large_runs_timeline_is_kept_as_columns_and_read_back_as_the_same_records(tmp_path, monkeypatch):
    """Above TIMELINE_ROWS calculations the result keeps a list per field (a fifth of the dicts' size);
    timeline(), the saved file and the report command read it back as the dicts a small run keeps."""
    from qcmb_dask.diagnostics import provenance

    data = mbe_input(3, keywords={"bsse_type": "nocp"})
    small = qcmb_dask.compute(data, "sync", cache=tmp_path / "store", progress=False)
    monkeypatch.setattr(provenance, "TIMELINE_ROWS", 6)  # 7 calculations: one too many
    large = qcmb_dask.compute(data, "sync", cache=tmp_path / "store", progress=False)
    columns = large.extras["qcmb_dask"]["timeline"]
    assert isinstance(columns, dict) and all(len(values) == 7 for values in columns.values())
    assert isinstance(small.extras["qcmb_dask"]["timeline"], list)
    records = qcmb_dask.timeline(large)
    assert [sorted(r) for r in records] == [sorted(r) for r in qcmb_dask.timeline(small)]
    assert {r["label"] for r in records} == {r["label"] for r in qcmb_dask.timeline(small)}
    assert all(r["from_store"] and r["ok"] for r in records)
    saved = tmp_path / "large.json"
    saved.write_text(large.model_dump_json())
    assert qcmb_dask.timeline(saved) == records == qcmb_dask.timeline()
    out = tmp_path / "report.html"
    assert CliRunner().invoke(main, ["report", str(saved), "--out", str(out)]).exit_code == 0
    assert "Fragment timeline" in out.read_text()


def test_a_run_on_worker_processes_names_its_cluster_and_workers(local_client):
    result = qcmb_dask.compute(mbe_input(2), local_client, progress=False)
    cluster = result.extras["qcmb_dask"]["cluster"]
    assert cluster["kind"] == "given" and cluster["workers"] == 2 and cluster["scheduler"].startswith("tcp://")
    names = {str(w["name"]) for w in local_client.scheduler_info()["workers"].values()}
    assert {r["worker"] for r in qcmb_dask.timeline(result)} <= names


def test_timeline_of_a_result_not_made_here_is_refused_by_name():
    from .conftest import qcmanybody_reference

    reference = qcmanybody_reference(mbe_input(2))  # QCManyBody's own: no qcmb_dask record
    with pytest.raises(qcmb_dask.InvalidArgument, match="not made by qcmb_dask"):
        qcmb_dask.timeline(reference)


def test_partial_results_round_trip_through_json(tmp_path):
    qcmb_dask.programs.register([DimersFailHarness()])
    data = mbe_input(3, keywords={"bsse_type": "nocp"}, program="dimers-fail", driver="gradient")
    partial = qcmb_dask.compute(data, "sync", on_error="partial", progress=False)
    assert isinstance(partial, qcmb_dask.PartialResult) and partial.nbody == 1
    back = qcmb_dask.PartialResult.model_validate_json(partial.model_dump_json(indent=1))
    assert back.nbody == partial.nbody and sorted(back.levels) == sorted(partial.levels)
    for n, level in partial.levels.items():
        assert back.levels[n].return_energy == level.return_energy
        for key, value in level.properties.items():
            np.testing.assert_array_equal(np.asarray(back.levels[n].properties[key]), np.asarray(value))
    assert [(f.label, f.error_type, f.message) for f in back.failures] == [
        (f.label, f.error_type, f.message) for f in partial.failures
    ]
    assert back.stats == partial.stats and back.extras == json.loads(json.dumps(partial.extras))
    saved = tmp_path / "partial.json"
    saved.write_text(partial.model_dump_json())
    assert isinstance(qcmb_dask.load_result(saved), qcmb_dask.PartialResult)
    assert len(qcmb_dask.timeline(saved)) == 7


def test_the_cli_keeps_a_partial_answer_its_table_and_report(tmp_path):
    qcmb_dask.programs.register([DimersFailHarness()])
    failing = tmp_path / "failing.json"
    failing.write_text(json.dumps(mbe_input(3, keywords={"bsse_type": "nocp", "max_nbody": 2}, program="dimers-fail")))
    out_path, report = tmp_path / "partial.json", tmp_path / "partial.html"
    out = CliRunner().invoke(
        main,
        ["run", str(failing), "--cluster", "sync", "--no-cache", "-q", "--on-error", "partial", "--out",
         str(out_path), "--report", str(report)],
    )  # fmt: skip
    assert out.exit_code == 1
    assert "complete through 1-body" in out.output and "NOCP        1" in out.output
    assert "PartialResult written to" in out.output and report.stat().st_size > 1000
    partial = qcmb_dask.load_result(out_path)
    assert partial.nbody == 1 and len(partial.failures) == 3

    table = CliRunner().invoke(main, ["table", str(out_path)])
    assert table.exit_code == 0 and table.output.splitlines()[1].split()[:2] == ["NOCP", "1"]


def test_table_rows_csv_and_report_of_a_saved_result(tmp_path):
    result = qcmb_dask.compute(mbe_input(3, keywords={"bsse_type": ["cp", "nocp"]}), "sync", progress=False)
    saved = tmp_path / "r.json"
    saved.write_text(result.model_dump_json())
    rows = qcmb_dask.table(saved)
    assert [(r["bsse"], r["nbody"]) for r in rows] == [("cp", n) for n in (1, 2, 3)] + [("nocp", n) for n in (1, 2, 3)]
    cp3 = rows[2]
    assert cp3["interaction_energy"] == result.properties.cp_corrected_interaction_energy_through_3_body
    assert cp3["contribution"] == result.properties.cp_corrected_3_body_contribution_to_energy
    assert cp3["total_energy"] == result.properties.cp_corrected_total_energy_through_3_body

    csv = CliRunner().invoke(main, ["table", str(saved), "--csv"])
    assert csv.exit_code == 0
    header, *lines = csv.output.strip().splitlines()
    assert header.split(",") == list(COLUMNS)
    assert float(lines[2].split(",")[2]) == cp3["interaction_energy"]

    report = tmp_path / "report.html"
    out = CliRunner().invoke(main, ["report", str(saved), "--out", str(report)])
    assert out.exit_code == 0 and "timeline" in report.read_text().lower()
    not_a_result = tmp_path / "x.json"
    not_a_result.write_text(json.dumps(mbe_input(2)))
    out = CliRunner().invoke(main, ["table", str(not_a_result)])
    assert out.exit_code == 2 and "not a many-body result" in out.output


def test_table_as_a_pandas_frame():
    pandas = pytest.importorskip("pandas", reason="pandas is optional: table(..., as_frame=True) needs it")
    result = qcmb_dask.compute(mbe_input(2), "sync", progress=False)
    frame = qcmb_dask.table(result, as_frame=True)
    assert isinstance(frame, pandas.DataFrame) and list(frame["nbody"]) == [1, 2]
