"""QCManyBody's entry point, run as a task graph: switching is one import.

    from qcmanybody.v2 import ManyBodyComputer   ->   from qcmb_dask.v2 import ManyBodyComputer
    from qcmanybody.v1 import ManyBodyComputer   ->   from qcmb_dask.v1 import ManyBodyComputer
    from qcmanybody import ManyBodyComputer      ->   from qcmb_dask import ManyBodyComputer   (v1, as in 0.8)

``from_manybodyinput(input_model, build_tasks=True)`` has QCManyBody's signature and meaning; what qcmb_dask
adds is keyword-only: ``cluster=``, every :func:`qcmb_dask.compute` option, and ``executor_config=`` in the
form proposed for QCManyBody's own parallel executor (:data:`EXECUTOR_CONFIG_KEYS`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qcmb_dask.worker.analysis import Result

from qcmb_dask.errors import InvalidArgument

#: ``executor_config`` key -> what it becomes (README, "Coming from QCManyBody")
EXECUTOR_CONFIG_KEYS = {
    "n_workers": "n_workers",
    "timeout_per_task": "timeout_per_task",
    "max_retries": "retries",
    "cache_dir": "cache",
    "checkpoint_file": "cache (the directory <checkpoint_file>.store)",
    "log_level": "the level of the 'qcmb_dask' logger during the run",
    "progress_callback": "callback, called as progress_callback(label, completed, total)",
}


class _Computer:
    #: the schema a dict input is read as, as QCManyBody's computer of the same name reads it
    schema_version: int = 2

    @classmethod
    def from_manybodyinput(
        cls,
        input_model,
        build_tasks: bool = True,
        *,
        cluster: Any = None,
        executor_config: Mapping | Any | None = None,
        **compute_options,
    ) -> Result | Any:
        """Run ``input_model`` as QCManyBody would, its fragments as a Dask graph; return its ManyBodyResult.

        ``build_tasks=False`` runs nothing and returns QCManyBody's own computer, as QCManyBody does.
        ``cluster`` and ``compute_options`` are :func:`qcmb_dask.compute`'s; ``executor_config`` takes the keys
        of :data:`EXECUTOR_CONFIG_KEYS` (a dict, or an object with those attributes).
        """
        from qcmb_dask.api import compute

        if not build_tasks:
            return cls._upstream().from_manybodyinput(input_model, build_tasks=False)
        input_model = cls._model(input_model)
        options, log_level = executor_options(executor_config)
        clash = sorted(set(options) & set(compute_options))
        if clash:
            raise InvalidArgument(f"{', '.join(clash)} given both in executor_config and as a keyword: give it once.")
        with _logger_level(log_level):
            return compute(input_model, cluster, **options, **compute_options)

    @classmethod
    def _model(cls, input_model):
        """A dict or file is read as QCManyBody's computer of this version reads it (v1: a v1 result)."""
        if not isinstance(input_model, (dict, str, Path)):
            return input_model
        from qcmb_dask.planning.inputs import normalize
        from qcmb_dask.planning.validate import input_errors
        from qcmb_dask.qcmanybody_adapter import NormalizedInput

        with input_errors():
            return NormalizedInput(normalize(input_model).model, cls.schema_version)

    @classmethod
    def _upstream(cls):
        if cls.schema_version == 1:
            from qcmanybody.v1 import ManyBodyComputer
        else:
            from qcmanybody.v2 import ManyBodyComputer
        return ManyBodyComputer


class ManyBodyComputerV2(_Computer):
    """Drop-in for ``qcmanybody.v2.ManyBodyComputer``: a dict input is a v2 ``ManyBodyInput``.

    Examples
    --------
    >>> from qcmb_dask.v2 import ManyBodyComputer
    >>> result = ManyBodyComputer.from_manybodyinput(mbin, executor_config={"n_workers": 4})  # doctest: +SKIP
    """

    schema_version = 2


class ManyBodyComputerV1(_Computer):
    """Drop-in for ``qcmanybody.v1.ManyBodyComputer`` (and ``qcmanybody.ManyBodyComputer`` in QCManyBody 0.8):
    a dict input is a v1 ``ManyBodyInput``, and gives a v1 result. A v2 model still gives a v2 result."""

    schema_version = 1


#: ``qcmb_dask.ManyBodyComputer`` is what ``qcmanybody.ManyBodyComputer`` is: the v1 computer in QCManyBody 0.8
ManyBodyComputer = ManyBodyComputerV1


def executor_options(config: Mapping | Any | None) -> tuple[dict, Any]:
    """``executor_config`` -> (compute keyword arguments, log level or None); unknown keys are refused."""
    if config is None:
        return {}, None
    if isinstance(config, Mapping):
        given = dict(config)
    else:  # a dataclass or pydantic model of the proposed API
        given = {k: getattr(config, k) for k in EXECUTOR_CONFIG_KEYS if getattr(config, k, None) is not None}
    unknown = sorted(set(given) - set(EXECUTOR_CONFIG_KEYS))
    if unknown:
        raise InvalidArgument(
            f"executor_config: unknown key(s) {', '.join(unknown)}; known: {', '.join(EXECUTOR_CONFIG_KEYS)}."
        )
    given = {k: v for k, v in given.items() if v is not None}
    options: dict[str, Any] = {}
    for key in ("n_workers", "timeout_per_task"):
        if key in given:
            options[key] = given[key]
    if "max_retries" in given:
        options["retries"] = given["max_retries"]
    if "cache_dir" in given and "checkpoint_file" in given:
        raise InvalidArgument("executor_config: give cache_dir or checkpoint_file, not both (both name the store).")
    if "cache_dir" in given:
        options["cache"] = given["cache_dir"]
    if "checkpoint_file" in given:
        options["cache"] = checkpoint_store(given["checkpoint_file"])
    if "progress_callback" in given:
        options["callback"] = _three_argument_callback(given["progress_callback"])
    return options, given.get("log_level")


def checkpoint_store(checkpoint_file) -> str:
    """The store directory a checkpoint file name stands for: ``<checkpoint_file>.store``, beside it.

    The store is a directory of one file per calculation (so that workers write it at once, and nothing is
    lost when the driver dies); a single checkpoint file cannot be written by many workers at once.
    """
    return str(Path(checkpoint_file).with_name(Path(checkpoint_file).name + ".store"))


def _three_argument_callback(progress_callback: Callable) -> Callable[[str, int, int, int], None]:
    if not callable(progress_callback):
        raise InvalidArgument(f"executor_config.progress_callback: expected a function, got {progress_callback!r}.")

    def callback(label: str, nbody: int, done: int, total: int) -> None:
        progress_callback(label, done, total)

    return callback


@contextlib.contextmanager
def _logger_level(level):
    if level is None:
        yield
        return
    logger = logging.getLogger("qcmb_dask")
    before = logger.level
    try:
        logger.setLevel(level.upper() if isinstance(level, str) else level)
    except (ValueError, TypeError) as err:
        raise InvalidArgument(f"executor_config.log_level: {err} (give e.g. 'INFO', 'DEBUG' or logging.INFO)") from None
    try:
        yield
    finally:
        logger.setLevel(before)
