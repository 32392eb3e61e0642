"""TLS for every cluster qcmb_dask starts: only the run's own processes may connect to its scheduler.

A Dask scheduler runs whatever a connected client sends it, as the user who started it. Listening on plain TCP,
on a shared login node or a compute node, anyone who can reach the port (every user of that node, through the
loopback interface too) could. ``qcmb_dask.security`` chooses:

- ``temporary`` (default): credentials made for each cluster (distributed's ``Security.temporary()``): a
  certificate authority of its own that signs the scheduler's, the workers' and this client's certificates, and
  that every connection must present. In this process they stay in memory; batch jobs read theirs from files in
  ``qcmb_dask.batch.credentials-directory`` (made readable by the user only); MPI ranks receive them through MPI.
- ``dask-config``: a site's own certificates, from Dask's ``distributed.comm.tls`` settings.
- ``none``: plain TCP, as Dask's own default.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from qcmb_dask.errors import InvalidArgument
from qcmb_dask.options import setting

MODES = ("temporary", "dask-config", "none")


def mode() -> str:
    value = setting("security")
    value = "none" if value in (False, None) else str(value).lower()
    if value not in MODES:
        raise InvalidArgument(
            f"qcmb_dask.security={value!r}: expected temporary (TLS, credentials made for the cluster), "
            "dask-config (TLS with your site's certificates from distributed.comm.tls) or none (plain TCP)."
        )
    return value


def for_new_cluster():
    """The ``distributed.security.Security`` of a cluster about to start, or None for plain TCP."""
    from distributed.security import Security

    chosen = mode()
    if chosen == "none":
        return None
    if chosen == "dask-config":
        security = Security()
        if not security.tls_ca_file:
            raise InvalidArgument(
                "qcmb_dask.security is dask-config, but Dask's distributed.comm.tls settings name no certificates "
                "(ca-file, and scheduler/worker/client cert and key): set them, or use security: temporary."
            )
        return security
    try:
        return Security.temporary()
    except ImportError as err:
        raise InvalidArgument(
            f"TLS credentials for the cluster need the cryptography package ({err}): pip install cryptography, "
            "or set qcmb_dask.security: none to run without TLS."
        ) from err


def local_cluster_options() -> dict:
    """``LocalCluster`` keywords: our ``security`` (TLS), or, with ``none``, Dask's plain default."""
    tls = for_new_cluster()
    return {"security": tls} if tls is not None else {"protocol": "tcp://"}


def private_directory(path: str) -> Path:
    """``path`` (``~`` and variables expanded), created if missing and made readable by its owner only: where
    batch jobs read their credentials. Refused where it is not ours."""
    directory = Path(os.path.expandvars(os.path.expanduser(path)))
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = directory.stat()
    if info.st_uid != os.getuid():
        raise InvalidArgument(
            f"qcmb_dask.batch.credentials-directory {str(directory)!r} belongs to another user: give a directory "
            "of your own on a file system the compute nodes share."
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        directory.chmod(0o700)
    return directory


def config_for_every_rank(security) -> dict:
    """Dask settings that give a process ``security``'s credentials (their PEM text, not files): for MPI ranks,
    which build their scheduler, workers and client from the Dask config."""
    settings = {"distributed.comm.require-encryption": True}
    for role in ("scheduler", "worker", "client"):
        tls = security.get_tls_config_for_role(role)
        settings["distributed.comm.tls.ca-file"] = tls["ca_file"]
        settings[f"distributed.comm.tls.{role}.cert"] = tls["cert"]
        settings[f"distributed.comm.tls.{role}.key"] = tls["key"]
    return settings
