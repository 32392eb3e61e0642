"""The QCEngine procedure ``qcmb_dask``: ``qcengine.compute(manybody_input, "qcmb_dask")`` gives QCEngine's own
``"qcmanybody"`` procedure's ``ManyBodyResult``, with the fragments run by :func:`qcmb_dask.compute`.

Registered when QCEngine is imported in a process that imported qcmb_dask (``qcmb_dask/__init__.py`` waits for
QCEngine's import instead of importing it). The cluster is ``qcmb_dask.procedure.cluster`` from the Dask config
(a scheduler address, ``"slurm"``, ...; default: the embedded cluster, kept between calls): QCEngine's
``task_config`` has no place for one.
"""

from __future__ import annotations

from typing import Any

from qcengine.procedures.qcmanybody import QCManyBodyProcedure

NAME = "qcmb_dask"


class QCMBDaskProcedure(QCManyBodyProcedure):
    """QCEngine's ``qcmanybody`` procedure, computed as a Dask task graph."""

    _defaults = {"name": NAME, "procedure": "manybody"}

    def compute(self, input_model, config) -> Any:
        import qcmb_dask
        from qcmb_dask.options import setting

        return qcmb_dask.compute(input_model, cluster=setting("procedure.cluster"), progress=False)


def register() -> None:
    """Add the procedure to QCEngine's (once per process)."""
    from qcengine.procedures import list_all_procedures, register_procedure

    if NAME not in list_all_procedures():
        register_procedure(QCMBDaskProcedure())
