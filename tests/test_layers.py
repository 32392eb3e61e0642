"""The floors hold: a worker and a scheduler load no client code, planning needs no Dask, clusters/ only connects
(no execution, diagnostics or worker code) and execution/ knows no kind of cluster.

Each check runs in a fresh interpreter, so what the test process already imported cannot hide an import.
"""

import ast
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import qcmb_dask
from qcmb_dask.graph import build
from qcmb_dask.planning.plan import make_plan

ROOT = Path(__file__).resolve().parent.parent
TRIMER = str(ROOT / "examples" / "water-trimer.json")

#: Code that runs only on the client: a worker or a scheduler that imports any of it has a layering bug.
CLIENT_MODULES = (
    "qcmb_dask.api",
    "qcmb_dask.cli",
    "qcmb_dask.computer",
    "qcmb_dask.interrupts",
    "qcmb_dask.v1",
    "qcmb_dask.v2",
    "qcmb_dask.graph",
    "qcmb_dask.planning",
    "qcmb_dask.diagnostics.progress",
    "qcmb_dask.diagnostics.plots",
    "qcmb_dask.diagnostics.runlog",
    "qcmb_dask.diagnostics.provenance",
    "qcmb_dask.diagnostics.results",
    "qcmb_dask.clusters.driver_job",
    "qcmb_dask.clusters.queue_state",
    "qcmb_dask.clusters.queues",
    "qcmb_dask.clusters.job_keeper",
    "qcmb_dask.execution",
    "qcmb_dask.clusters.local",
    "qcmb_dask.clusters.given",
    "qcmb_dask.clusters.inprocess",
    "qcmb_dask.clusters.jobqueue",
    "qcmb_dask.clusters.mpi",
    "qcmb_dask.many_inputs",
    "qcmb_dask.optimization",
)


def loaded_after(code: str, stdin: bytes = b"") -> list:
    """The modules a fresh interpreter has loaded after running ``code`` (which may read stdin)."""
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], input=stdin, capture_output=True, timeout=120, check=True)
    return json.loads(out.stdout.decode().splitlines()[-1])


def client_modules_in(modules: list) -> list:
    return [m for m in modules if m.startswith(CLIENT_MODULES)]


def test_a_worker_that_unpickles_and_runs_fragments_loads_no_client_code():
    plan = make_plan(TRIMER)
    graph = build(plan, task_config={"ncores": 1})
    job = graph.jobs[plan.tasks[0].label]
    blob = pickle.dumps((job, plan.input, [t.label for t in plan.tasks]))
    code = (
        "import pickle, sys\n"
        "from qcmb_dask.worker.fragment import run_fragment\n"
        "from qcmb_dask.worker import analysis\n"
        "from qcmb_dask.qcmanybody_adapter import prepare_parent\n"
        "job, normalized, labels = pickle.loads(sys.stdin.buffer.read())\n"
        "out = run_fragment(prepare_parent(normalized.model.molecule), job)\n"
        "assert out.properties['energy'] < 0, out\n"
        "import qcmb_dask.worker.plugins, qcmb_dask.worker.watchdog\n"
    )
    modules = loaded_after(code, blob)
    assert "qcmb_dask.worker.fragment" in modules and "pyscf" in modules  # it really ran PySCF
    assert client_modules_in(modules) == []


def test_a_scheduler_that_loads_the_page_and_the_preload_loads_no_client_code():
    modules = loaded_after(
        "import qcmb_dask.diagnostics.page, qcmb_dask.clusters.preload, qcmb_dask.dashboard, qcmb_dask.prompt_sends\n"
        "from qcmb_dask.diagnostics.page import page_html\n"
        "assert 'QCElemental' in page_html()\n"
    )
    assert "qcmb_dask.diagnostics.page" in modules
    assert client_modules_in(modules) == []


def test_planning_needs_no_dask():
    modules = loaded_after(
        "from qcmb_dask.planning.plan import make_plan\n"
        "from qcmb_dask.planning import cost_history\n"
        f"plan = make_plan({TRIMER!r})\n"
        "assert len(cost_history.refine(plan, None)) == 13\n"
    )
    assert [m for m in modules if m.split(".")[0] in ("dask", "distributed")] == []


def test_importing_the_package_imports_nothing_until_a_name_is_used():
    modules = loaded_after("import qcmb_dask")
    # compat alone: the standard library's import hook that registers the QCEngine procedures later
    assert [m for m in modules if m.startswith("qcmb_dask.") or m.split(".")[0] in ("dask", "qcengine")] == [
        "qcmb_dask.compat"
    ]
    assert set(qcmb_dask.__all__) >= {"compute", "plan", "build_graph", "job_script", "timeline", "plots"}
    for name in qcmb_dask.__all__:
        assert getattr(qcmb_dask, name) is not None, name


def imported_by(folder: str) -> dict[str, set[str]]:
    """module file -> every qcmb_dask module it imports, at the top or inside a function (the source, not a run:
    an import in a branch no test takes counts too)."""
    found = {}
    for path in sorted((ROOT / "qcmb_dask" / folder).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
        found[str(path.relative_to(ROOT))] = {name for name in names if name.startswith("qcmb_dask")}
    return found


@pytest.mark.parametrize(
    "folder, forbidden",
    [
        ("clusters", ("qcmb_dask.execution", "qcmb_dask.diagnostics", "qcmb_dask.worker", "qcmb_dask.graph")),
        ("execution", ("qcmb_dask.clusters.auto", "qcmb_dask.clusters.given", "qcmb_dask.clusters.inprocess")),
        ("execution", ("qcmb_dask.clusters.jobqueue", "qcmb_dask.clusters.local", "qcmb_dask.clusters.mpi")),
        ("execution", ("qcmb_dask.clusters.shared", "qcmb_dask.clusters.security", "qcmb_dask.clusters.driver_job")),
        ("planning", ("qcmb_dask.execution", "qcmb_dask.clusters", "qcmb_dask.diagnostics", "qcmb_dask.graph")),
        ("worker", ("qcmb_dask.execution", "qcmb_dask.clusters", "qcmb_dask.api", "qcmb_dask.planning")),
    ],
)
def test_each_floor_imports_only_what_it_may(folder, forbidden):
    breaches = {
        module: sorted(name for name in names if name.startswith(forbidden))
        for module, names in imported_by(folder).items()
        if any(name.startswith(forbidden) for name in names)
    }
    assert breaches == {}
