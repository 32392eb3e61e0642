"""The documentation site builds with every warning an error (a broken link, a missing page or reference fails
with the page named), and two of its pages render in headless Chromium with the navigation and a plot.

The examples on its pages run as tests of their own (tests/docs_fences.py).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

requires_mkdocs = pytest.mark.skipif(
    shutil.which("mkdocs") is None and not (Path(sys.executable).parent / "mkdocs").exists(),
    reason='no mkdocs here (pip install ".[docs]"; .ci/run installs it)',
)
requires_chromium = pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="no chromium here (apt-get install chromium; .ci/run installs it)",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built as CI builds it: ``mkdocs build --strict``."""
    where = tmp_path_factory.mktemp("site")
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(where)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-6000:]
    return where


def rendered(page: Path) -> str:
    """The page's DOM after its scripts ran."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    out = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=8000", "--dump-dom"]
        + [page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.slow
@requires_mkdocs
def test_the_site_builds_strictly_with_the_generated_references(site):
    cli = (site / "reference" / "cli" / "index.html").read_text()
    for command in ("run", "plan", "optimize", "submit", "job-script", "failures", "cache"):
        assert f"qcmb-dask {command}" in cli, command  # generated from the click commands
    config = (site / "reference" / "config" / "index.html").read_text()
    for key in ("qcmb_dask.preflight", "qcmb_dask.batch.max-jobs", "qcmb_dask.local.idle-timeout"):
        assert key in config, key  # generated from qcmb_dask.yaml
    api = (site / "reference" / "python-api" / "index.html").read_text()
    assert "threads_per_task" in api and "compute_many" in api  # the run keywords' one description, rendered


@pytest.mark.slow
@requires_mkdocs
@requires_chromium
def test_two_pages_render_with_the_navigation_and_a_plot(site):
    home = rendered(site / "index.html")
    for section in ("Tutorials", "How-to guides", "Reference", "Explanation"):
        assert section in home, section
    assert 'class="qcmb-plot"' in home and "bk-Figure" in home  # BokehJS (inlined) drew the convergence plot
    laptop = rendered(site / "tutorials" / "laptop" / "index.html")
    assert "How-to guides" in laptop and "qcmb-dask run" in laptop
