"""Every ```python and ```bash fence of the docs (and the README) runs as a test: a page is a test file, a fence
an item, in order.

A page's fences run in a fresh directory holding a copy of ``examples/``, with the result store there too; its
python fences share one namespace. An HTML comment on the line before a fence says how it is tested:
``<!-- docs-test: requires slurm -->`` (or ``nwchem``, ``mpi``) skips it where that is missing (CI has all three);
``<!-- docs-test: not-run installs software -->`` is for install commands only. Nothing else is skipped, so an
example that stops working fails the suite with its page and line named.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ("python", "bash")
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,})(?P<info>[^`\n]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<what>.*?)\s*-->\s*$")
_INSTALL = re.compile(r"^\s*(pip|python3? -m (pip|venv)|apt-get|sudo apt-get|conda|mamba|\.|source)\b")
#: seconds one fence may take
FENCE_TIMEOUT = 300


@dataclass
class Fence:
    language: str
    code: str
    line: int
    directive: str | None


def fences(text: str) -> list[Fence]:
    """The fenced blocks of a Markdown text, each with its language, first line and docs-test directive."""
    found, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, ticks = match["indent"], match["ticks"]
        language = match["info"].strip().split(" ")[0].lower() if match["info"].strip() else ""
        directive = _DIRECTIVE.match(lines[i - 1]) if i > 0 else None
        body, j = [], i + 1
        while j < len(lines) and not (lines[j].strip().startswith(ticks) and lines[j].strip().strip("`") == ""):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        found.append(Fence(language, textwrap.dedent("\n".join(body)), i + 2, directive["what"] if directive else None))
        i = j + 1
    return found


def available(component: str) -> bool:
    if component == "slurm":
        if not shutil.which("sinfo"):
            return False
        return subprocess.run(["sinfo"], capture_output=True, timeout=30).returncode == 0
    if component == "nwchem":
        return shutil.which("nwchem") is not None
    if component == "mpi":
        try:
            import mpi4py  # noqa: F401
        except ImportError:
            return False
        return shutil.which("mpirun") is not None
    raise ValueError(f"docs-test: unknown component {component!r} (slurm, nwchem, mpi)")


class MarkdownPage(pytest.File):
    """A Markdown page: an item per runnable fence, sharing one directory and one Python namespace."""

    def collect(self):
        self.workdir: Path | None = None
        self.namespace: dict = {"__name__": "__docs__"}
        for fence in fences(self.path.read_text()):
            if fence.language not in RUN:
                continue
            if fence.directive and fence.directive.startswith("not-run"):
                if not all(_INSTALL.match(line) for line in fence.code.splitlines() if line.strip()):
                    raise pytest.UsageError(
                        f"{self.path}:{fence.line}: 'not-run' is for install commands only; this fence runs other "
                        "commands: make it run, or take it out of the docs."
                    )
                continue
            yield FenceItem.from_parent(self, name=f"line {fence.line} ({fence.language})", fence=fence)

    def directory(self) -> Path:
        if self.workdir is None:
            import tempfile

            self.workdir = Path(tempfile.mkdtemp(prefix=f"docs-{self.path.stem}-"))
            shutil.copytree(ROOT / "examples", self.workdir / "examples")
        return self.workdir

    def environment(self) -> dict:
        store = self.directory() / "store"
        return {
            "DASK_QCMB_DASK__CACHE": str(store),
            "DASK_QCMB_DASK__LOCAL__DASHBOARD_ADDRESS": "127.0.0.1:0",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])),
        }


class FenceItem(pytest.Item):
    def __init__(self, *, fence: Fence, **kwargs):
        super().__init__(**kwargs)
        self.fence = fence
        what = fence.directive or ""
        if what.startswith("requires "):
            component = what.split()[1]
            if not available(component):
                self.add_marker(pytest.mark.skip(reason=f"needs {component} (CI has it)"))
        elif what:
            raise pytest.UsageError(f"{self.path}:{fence.line}: unknown docs-test directive {what!r}")

    def runtest(self) -> None:
        page: MarkdownPage = self.parent
        workdir, environment = page.directory(), page.environment()
        if self.fence.language == "bash":
            out = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", self.fence.code],
                cwd=workdir,
                env={**os.environ, **environment},
                capture_output=True,
                text=True,
                timeout=FENCE_TIMEOUT,
            )
            if out.returncode != 0:
                raise FenceFailed(f"exit status {out.returncode}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}")
            return
        import dask

        settings = {
            "qcmb_dask.cache": environment["DASK_QCMB_DASK__CACHE"],
            "qcmb_dask.local.dashboard-address": environment["DASK_QCMB_DASK__LOCAL__DASHBOARD_ADDRESS"],
        }
        here = os.getcwd()
        os.chdir(workdir)
        sys.path.insert(0, str(workdir))
        try:
            with dask.config.set(settings):
                exec(compile(self.fence.code, f"{self.path}:{self.fence.line}", "exec"), page.namespace)
        finally:
            sys.path.remove(str(workdir))
            os.chdir(here)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, FenceFailed):
            return f"{self.path}:{self.fence.line}: the {self.fence.language} fence failed: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, self.fence.line - 1, f"{self.path.name}:{self.fence.line}"


class FenceFailed(Exception):
    pass
