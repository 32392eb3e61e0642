"""Every keyword of ``compute``, ``build_graph``, ``job_script`` and the CLI, resolved once into :class:`Options`.

Defaults are shipped in ``qcmb_dask.yaml`` and loaded into ``dask.config`` under ``qcmb_dask:``. As in
dask-jobqueue, a keyword left as ``None`` is resolved at call time from the Dask config, so
``~/.config/dask/qcmb_dask.yaml``, a site's ``/etc/dask`` file or ``DASK_QCMB_DASK__ORDERING=by_level`` change
the defaults. Each parameter is described once, in :data:`PARAMETERS`; the API's docstrings and the CLI's help
are made from it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import dask.config
import yaml

from qcmb_dask.errors import InvalidArgument

_DEFAULTS_FILE = os.path.join(os.path.dirname(__file__), "qcmb_dask.yaml")

with open(_DEFAULTS_FILE) as f:
    _DEFAULTS = yaml.safe_load(f)
dask.config.update_defaults(_DEFAULTS)

ON_ERROR = ("raise", "partial")
ORDERINGS = ("free", "by_level")

#: One description per parameter, for every place that documents it (docstrings, CLI help).
#: The share of a machine's (or a worker's) memory its fragments are told they may use: the rest is for the
#: worker process itself, the program's own overheads and the operating system.
MEMORY_FRACTION = 0.8

PARAMETERS = {
    "jobs": "Batch clusters: keep this many jobs (a job that ends is replaced while work remains). Default: enough "
    "jobs for every calculation, at most ``qcmb_dask.batch.max-jobs`` (10).",
    "adapt": "Batch clusters: ``(min, max)`` jobs, Dask chooses between them.",
    "cluster_options": "Batch clusters: dask-jobqueue settings for this call (``queue``, ``account``, ``cores``, "
    "``memory``, ``walltime``, ``job_script_prologue``, ``interface``, ...), over the Dask config and the profile.",
    "n_workers": "Fragments run at once on the embedded cluster (with ``gpus``: its CPU workers, 0 for GPU workers "
    "alone). Default: fill the machine without oversubscribing it.",
    "gpus": "GPUs of the embedded cluster for fragments placed on a GPU (the PySCF keyword ``device``: ``gpu`` or "
    "``auto``). Default: every GPU this machine shows when a model chemistry asks for one, else none.",
    "processes_per_gpu": "Fragment processes sharing each GPU, each with its share of the card's memory. Default: "
    "``qcmb_dask.gpu.processes-per-gpu`` (2).",
    "threads_per_task": "Cores per fragment calculation. Default: the machine's cores shared among the workers "
    "(embedded cluster), 1 elsewhere.",
    "memory_per_task": "Memory per fragment calculation: GiB as a number, or a size as Dask writes one (``'4GiB'``, "
    "``'512MiB'``). Default: 80 % of the memory a worker has, shared among the fragments it runs at once.",
    "retries": "Reruns of a calculation that fails with a random (transient) error (QCEngine's ``RandomError``); "
    "input and convergence errors are not retried. Default 2.",
    "timeout_per_task": "How long a fragment may run: seconds, or a duration (``'2h'``, ``'30m'``, ``'01:30:00'``); "
    "a fragment over it has its worker ended (freeing the core) and "
    "is tried again like a fragment whose worker was lost, up to ``allowed-failures`` times. Needs worker "
    "processes.",
    "escalate": "On a convergence failure, try once more with the program's documented fallback (PySCF: "
    "``max_cycle`` 200 and ``level_shift`` 0.2). Off by default.",
    "on_error": '``"raise"`` (default): when fragments fail, the others still finish and are stored, then '
    ':class:`~qcmb_dask.errors.FragmentsFailed` lists every failure. ``"partial"``: return a '
    ":class:`~qcmb_dask.worker.analysis.PartialResult` with the highest complete n-body level instead.",
    "progress": '``"auto"`` (default): a live progress line with an ETA in a terminal, an HTML block in Jupyter, '
    "nothing when not interactive (batch jobs, pipes; the ``qcmb_dask`` logger still gets every line). ``True``: "
    "always print to stderr; ``False``: the logger only; or a callable receiving each k-body-truncated "
    ":class:`~qcmb_dask.worker.analysis.LevelResult` as it completes.",
    "ordering": '``"free"`` (default, every fragment independent) or ``"by_level"`` (level k waits for level k-1).',
    "cache": "The fragment result store: a directory, ``True`` (the default: ``~/.cache/qcmb_dask/results``) or "
    "``False``. Finished fragments are written there as they finish; a rerun of the same input (after a crash, "
    "Ctrl-C or failure) computes only the missing ones, and other inputs reuse identical calculations.",
    "report": "A path: write an HTML report there at the end (summary table, n-body convergence plot, fragment "
    "timeline; see :mod:`qcmb_dask.diagnostics.plots`). Checked before the run starts.",
}


class RunOptions(TypedDict, total=False):
    """The keywords every run takes (``compute``, ``compute_many``, ``optimize``), described once in
    :data:`PARAMETERS`: ``compute(input, cluster, **options: Unpack[RunOptions])``."""

    jobs: int
    adapt: tuple[int, int]
    cluster_options: dict
    n_workers: int
    gpus: int
    processes_per_gpu: int
    threads_per_task: int
    memory_per_task: float | str
    retries: int
    timeout_per_task: float | str
    escalate: bool
    on_error: str
    progress: Any
    report: str
    ordering: str


#: the run keywords, in the order the docstrings and help list them
RUN_OPTIONS = tuple(RunOptions.__annotations__)


def setting(key: str, default: Any = None) -> Any:
    """``qcmb_dask.<key>`` from the Dask config: the user's and site's values, else ours.

    Ours are put back first where a ``dask.config.set`` block that was open when this module was first
    imported took them away on its exit (it removes the keys it did not find when it began).
    """
    dask.config.update(dask.config.config, _DEFAULTS, priority="old")
    return dask.config.get(f"qcmb_dask.{key}", default=default)


def value_or_setting(value: Any, key: str) -> Any:
    """``value`` if given, else ``qcmb_dask.<key>`` from dask config."""
    return setting(key) if value is None else value


def document(*names: str) -> Callable:
    """Fill a docstring's ``{parameters}`` with the numpydoc entries of ``names`` from :data:`PARAMETERS`."""

    def decorate(func):
        entries = "\n".join(f"    {name}\n        {_wrapped(PARAMETERS[name], 8)}" for name in names)
        func.__doc__ = func.__doc__.replace("    {parameters}", entries)
        return func

    return decorate


def short_help(name: str) -> str:
    """The first sentence of a parameter's description, without reST markup: the CLI's help text."""
    text = PARAMETERS[name].replace("``", "").split(". ")[0].rstrip(".")
    return text + "."


def _wrapped(text: str, indent: int, width: int = 110) -> str:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width - indent:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return ("\n" + " " * indent).join(lines)


@dataclass(frozen=True)
class Options:
    """Every keyword of a run, resolved from the call and the Dask config, and checked: one object that the
    API, the CLI and the cluster backends share."""

    n_workers: int | None = None
    gpus: int | None = None
    processes_per_gpu: int | None = None
    threads_per_task: int | None = None
    memory_per_task: float | None = None
    retries: int = 2
    timeout_per_task: float | None = None
    escalate: bool = False
    on_error: str = "raise"
    progress: Any = "auto"
    ordering: str = "free"
    max_calculations: int | None = None
    jobs: int | None = None
    adapt: tuple[int, int] | None = None
    cluster_options: dict | None = None
    report: str | None = None

    @classmethod
    def from_call(cls, **given: Any) -> Options:
        """Each keyword as given, else from ``qcmb_dask.<key>`` in the Dask config; refused (InvalidArgument)
        before anything runs if it cannot be used."""
        unknown = sorted(set(given) - set(cls.__dataclass_fields__))
        if unknown:
            import difflib

            from qcmb_dask.errors import UnknownArgument

            close = {name: difflib.get_close_matches(name, list(cls.__dataclass_fields__), n=1) for name in unknown}
            named = ", ".join(
                f"{name!r}" + (f" (did you mean {close[name][0]!r}?)" if close[name] else "") for name in unknown
            )
            raise UnknownArgument(f"unknown keyword argument(s) {named}; the keywords are {', '.join(RUN_OPTIONS)}.")
        from_config = {
            name: value_or_setting(given.get(name), name.replace("_", "-"))
            for name in (
                "threads_per_task",
                "memory_per_task",
                "retries",
                "timeout_per_task",
                "escalate",
                "on_error",
                "progress",
                "ordering",
                "max_calculations",
            )
        }
        from_config["processes_per_gpu"] = value_or_setting(given.get("processes_per_gpu"), "gpu.processes-per-gpu")
        from_config["memory_per_task"] = gibibytes(from_config["memory_per_task"], "memory_per_task")
        from_config["timeout_per_task"] = seconds(from_config["timeout_per_task"], "timeout_per_task")
        options = cls(**{**given, **from_config, "escalate": bool(from_config["escalate"])})
        options.check()
        return options

    def check(self) -> None:
        """Refuse what cannot run, naming the argument and what to give instead."""
        if self.gpus is not None and (isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 0):
            raise InvalidArgument(
                f"gpus={self.gpus!r}: expected a whole number of GPUs (0: none), or None for the default."
            )
        for name in ("n_workers", "threads_per_task", "jobs", "processes_per_gpu"):
            value = getattr(self, name)
            if name == "n_workers" and value == 0 and self.gpus and not isinstance(value, bool):
                continue  # GPU workers alone: no CPU workers beside them
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidArgument(
                    f"{name}={value!r}: expected a whole number of at least 1, or None for the default."
                )
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise InvalidArgument(
                f"retries={self.retries!r}: expected 0 (no reruns) or more reruns of a transiently failed calculation."
            )
        for name, unit in (("memory_per_task", "GiB"), ("timeout_per_task", "seconds")):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
                raise InvalidArgument(
                    f"{name}={value!r}: expected a positive number of {unit}, or None for no limit/the default."
                )
        if self.on_error not in ON_ERROR:
            raise InvalidArgument(f"on_error={self.on_error!r}: expected one of {ON_ERROR}.")
        if self.ordering not in ORDERINGS:
            raise InvalidArgument(f"ordering={self.ordering!r}: expected one of {ORDERINGS}.")
        if self.progress not in (True, False, "auto") and not callable(self.progress):
            raise InvalidArgument(f"progress={self.progress!r}: expected True, False, 'auto' or a callable.")
        if self.adapt is not None:
            bounds = tuple(self.adapt)
            if (
                len(bounds) != 2
                or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
                or not 0 <= bounds[0] <= bounds[1]
                or bounds[1] < 1
            ):
                raise InvalidArgument(
                    f"adapt={self.adapt!r}: expected (minimum_jobs, maximum_jobs) with 0 <= minimum <= maximum, "
                    "maximum >= 1, e.g. adapt=(0, 10)."
                )
        if self.jobs is not None and self.adapt is not None:
            raise InvalidArgument("give jobs=N (a fixed number of jobs) or adapt=(min, max), not both.")
        if self.report is not None:
            check_output_path(self.report, "report=")


_CLOCK = re.compile(r"^(?:(\d+)-)?(\d+):(\d{1,2}):(\d{1,2})$")


def gibibytes(value: Any, name: str) -> float | None:
    """GiB from a number (GiB) or a size as Dask writes one: ``"4GiB"``, ``"4 GB"``, ``"512MiB"``."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        from dask.utils import parse_bytes

        try:
            return float(value)  # a number of GiB, written as a string (a CLI flag, an environment variable)
        except ValueError:
            pass
        try:
            return parse_bytes(value) / 2**30
        except (ValueError, TypeError):
            pass
    raise InvalidArgument(f"{name}={value!r}: expected GiB as a number, or a size such as '4GiB', '4 GB' or '512MiB'.")


def seconds(value: Any, name: str) -> float | None:
    """Seconds from a number or a duration as Dask or a batch system writes one: ``"2h"``, ``"30m"``, ``"90s"``,
    ``"01:30:00"`` (HH:MM:SS) or ``"1-00:00:00"`` (D-HH:MM:SS)."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        clock = _CLOCK.match(value.strip())
        if clock:
            days, hours, minutes, secs = (int(g) if g else 0 for g in clock.groups())
            return float(((days * 24 + hours) * 60 + minutes) * 60 + secs)
        from dask.utils import parse_timedelta

        try:
            return float(parse_timedelta(value.strip(), default="seconds"))
        except (ValueError, TypeError, KeyError):
            pass
    raise InvalidArgument(
        f"{name}={value!r}: expected seconds as a number, or a duration such as '2h', '30m', '90s', '01:30:00' "
        "(HH:MM:SS) or '1-00:00:00'."
    )


def check_harnesses(harnesses: Sequence) -> None:
    """Harnesses are QCEngine ``ProgramHarness`` instances; a program's name is not one."""
    if isinstance(harnesses, (str, bytes)) or not hasattr(harnesses, "__iter__"):
        harnesses = [harnesses]
    for harness in harnesses:
        if not hasattr(harness, "compute") or not isinstance(getattr(harness, "name", None), str):
            raise InvalidArgument(
                f"harnesses: {harness!r} is not a QCEngine ProgramHarness. Pass harness instances, e.g. "
                "harnesses=[MyHarness()]; a program QCEngine already knows (pyscf, nwchem, psi4 ...) needs none: "
                "name it as the specification's program."
            )


def check_output_path(path, option: str) -> None:
    """An output file that cannot be written is refused before the run, not after it (results would be lost)."""
    target = os.path.abspath(os.path.expanduser(os.fspath(path)))
    folder = os.path.dirname(target)
    if os.path.isdir(target):
        example = os.path.join(os.fspath(path), "result.json")
        raise InvalidArgument(f"{option} {str(path)!r} is a directory: give a file name, e.g. {example!r}.")
    if not os.path.isdir(folder):
        raise InvalidArgument(
            f"{option} {str(path)!r}: the directory {folder!r} does not exist; create it first (mkdir -p)."
        )
    # Tried, not asked (os.access): root passes every permission check, yet /proc or a read-only mount refuse.
    try:
        if os.path.exists(target):
            with open(target, "ab"):
                pass
        else:
            import tempfile

            with tempfile.NamedTemporaryFile(dir=folder, prefix=".qcmb-dask-write-test-"):
                pass
    except OSError as err:
        raise InvalidArgument(
            f"{option} {str(path)!r} cannot be written ({err.strerror or err}); choose a path in a writable directory."
        ) from None
