"""MkDocs hooks: the pages generated from the code, so that nothing in them is copied by hand.

- ``reference/config.md``: every ``qcmb_dask.*`` Dask config key with its default and its comment in the shipped
  ``qcmb_dask.yaml``, and every run keyword with its one description (``qcmb_dask.options.PARAMETERS``).
- ``<!-- generated: convergence-plot INPUT -->``: INPUT (a file of ``examples/``) run in this process while the
  site is built, and its n-body convergence plot (``qcmb_dask.plots.convergence``) drawn there, BokehJS inlined
  so the page needs no network.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKER = "<!-- generated: config-keys -->"
PLOT = re.compile(r"<!-- generated: convergence-plot (?P<input>\S+) -->")


def on_config(config):
    import warnings

    # the API pages import the package whole; its two old scheduler-module names warn on import, by design
    warnings.filterwarnings(
        "ignore", message=r"qcmb_dask\.(dashboard|prompt_sends) is the old name", category=FutureWarning
    )
    return config


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, config_keys_table() + "\n\n" + run_keywords_table())
    return PLOT.sub(lambda match: convergence_plot(match["input"]), markdown)


def convergence_plot(input_path: str) -> str:
    """The plot of a real run of ``input_path``, as HTML with BokehJS inlined."""
    from bokeh.embed import components
    from bokeh.resources import Resources

    import qcmb_dask

    result = qcmb_dask.compute(str(ROOT / input_path), "sync", cache=False, progress=False)
    script, div = components(qcmb_dask.plots.convergence(result, title=f"n-body convergence of {input_path}"))
    bokeh_js = Resources(mode="inline", components=["bokeh"]).render_js()  # the core bundle: a plot needs no widgets
    return "\n".join([bokeh_js, script, f'<div class="qcmb-plot">{div}</div>'])


def config_keys_table() -> str:
    """``qcmb_dask.yaml``, a row per key: its dotted name, its default, the comment above it."""
    rows, comment, stack = [], [], []
    for line in (ROOT / "qcmb_dask" / "qcmb_dask.yaml").read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            comment = []
            continue
        if stripped.startswith("#"):
            comment.append(stripped.lstrip("#").strip())
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = stripped.partition(":")
        value, _, trailing = value.partition(" #")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        name = ".".join([k for _, k in stack] + [key])
        if value.strip() == "":
            stack.append((indent, key))
            if name != "qcmb_dask":
                rows.append((name, "", " ".join(comment)))
        else:
            described = " ".join([*comment, trailing.strip()]).strip()
            rows.append((name, value.strip(), described))
        comment = []
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {f'`{default}`' if default else ''} | {_cell(text)} |" for name, default, text in rows]
    return "\n".join(lines)


def run_keywords_table() -> str:
    from qcmb_dask.options import PARAMETERS, RUN_OPTIONS

    lines = [
        "The run keywords of `compute`, `compute_many` and `optimize` (`qcmb_dask.options.RunOptions`), each left "
        "as `None` taken from the key of the same name above (`threads_per_task` from `qcmb_dask.threads-per-task`):",
        "",
        "| keyword | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {_cell(PARAMETERS[name])} |" for name in (*RUN_OPTIONS, "cache") if name in PARAMETERS]
    return "\n".join(lines)


def _cell(text: str) -> str:
    text = re.sub(r":(?:class|func|mod|data):`~?([^`]+)`", r"`\1`", text)
    return text.replace("``", "`").replace("|", "\\|")
