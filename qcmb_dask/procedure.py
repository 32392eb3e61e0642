"""The QCEngine procedures of qcmb_dask.

- ``qcmb_dask``: ``qcengine.compute(manybody_input, "qcmb_dask")`` gives QCEngine's own ``"qcmanybody"``
  procedure's ``ManyBodyResult``, with the fragments run by :func:`qcmb_dask.compute`.
- ``qcmb_dask_geometric``: ``qcengine.compute(optimization_input, "qcmb_dask_geometric")`` with a many-body
  specification optimizes with :func:`qcmb_dask.optimize` (every gradient a graph, one cluster for all steps).
  QCEngine's own ``geometric`` procedure cannot take one (it hands geomeTRIC a QCSchema v1 specification, which a
  many-body specification has no form in); an atomic specification goes to that procedure unchanged.

Registered when QCEngine is imported in a process that imported qcmb_dask (``qcmb_dask/__init__.py`` waits for
QCEngine's import instead of importing it). The cluster is ``qcmb_dask.procedure.cluster`` from the Dask config
(a scheduler address, ``"slurm"``, ...; default: the embedded cluster, kept between calls): QCEngine's
``task_config`` has no place for one.
"""

from __future__ import annotations

from typing import Any

from qcengine.procedures.geometric import GeometricProcedure
from qcengine.procedures.qcmanybody import QCManyBodyProcedure

NAME = "qcmb_dask"
OPTIMIZATION_NAME = "qcmb_dask_geometric"


class QCMBDaskProcedure(QCManyBodyProcedure):
    """QCEngine's ``qcmanybody`` procedure, computed as a Dask task graph."""

    _defaults = {"name": NAME, "procedure": "manybody"}

    def compute(self, input_model, config) -> Any:
        import qcmb_dask
        from qcmb_dask.options import setting

        return qcmb_dask.compute(input_model, cluster=setting("procedure.cluster"), progress=False)


class QCMBDaskGeometricProcedure(GeometricProcedure):
    """QCEngine's ``geometric`` procedure, with many-body specifications optimized by :func:`qcmb_dask.optimize`."""

    _defaults = {"name": OPTIMIZATION_NAME, "procedure": "optimization"}

    def compute(self, input_model, config) -> Any:
        from qcmanybody.models.v2 import ManyBodyInput, ManyBodySpecification

        import qcmb_dask
        from qcmb_dask.options import setting

        specification = input_model.specification
        if not isinstance(specification.specification, ManyBodySpecification):
            return super().compute(input_model, config)
        mbin = ManyBodyInput(molecule=input_model.initial_molecule, specification=specification.specification)
        keywords = {k: v for k, v in specification.keywords.items() if k != "program"}
        result = qcmb_dask.optimize(mbin, cluster=setting("procedure.cluster"), progress=False, **keywords)
        protocols = specification.protocols
        if protocols.trajectory_results.value != "all":  # the caller's protocol, applied by QCElemental's model
            data = result.model_dump()
            data["input_data"]["specification"]["protocols"] = protocols.model_dump()
            result = type(result)(**data)
        return result


def register() -> None:
    """Add the procedures to QCEngine's (once per process)."""
    from qcengine.procedures import list_all_procedures, register_procedure

    known = list_all_procedures()
    if NAME not in known:
        register_procedure(QCMBDaskProcedure())
    if OPTIMIZATION_NAME not in known:
        register_procedure(QCMBDaskGeometricProcedure())
