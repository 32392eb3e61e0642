"""Defaults shipped in ``qcmb_dask.yaml``, loaded into ``dask.config`` under ``qcmb_dask:``.

As dask-jobqueue does: a ``None`` keyword is resolved at call time from the user's dask config,
so ``~/.config/dask/qcmb_dask.yaml`` or ``DASK_QCMB_DASK__ORDERING=by_level`` change defaults.
"""

from __future__ import annotations

import os
from typing import Any

import dask.config
import yaml

_DEFAULTS_FILE = os.path.join(os.path.dirname(__file__), "qcmb_dask.yaml")

with open(_DEFAULTS_FILE) as f:
    dask.config.update_defaults(yaml.safe_load(f))


def resolve(value: Any, key: str) -> Any:
    """``value`` if given, else ``qcmb_dask.<key>`` from dask config."""
    return dask.config.get(f"qcmb_dask.{key}") if value is None else value
