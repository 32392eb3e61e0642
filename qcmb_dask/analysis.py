"""Fragment results -> QCManyBody's ``ManyBodyCore.analyze`` -> ManyBodyResult (and k-body truncations).

The arithmetic is QCManyBody's own; this module only gathers what the fragments returned.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence

from .fragment import FragmentOutput
from .inputs import NormalizedInput
from .plan import qcmb_computer, truncated_core


@dataclass
class LevelResult:
    """The MBE truncated at ``nbody``: available as soon as every calculation of levels <= nbody is done.

    ``properties`` holds QCManyBody's property names through this level, e.g.
    ``cp_corrected_interaction_energy_through_2_body``; ``energy_body_dict`` is keyed like ``"2cp"``.
    """

    nbody: int
    ncalculations: int
    properties: Dict[str, Any]
    energy_body_dict: Dict[str, float]
    return_energy: float

    def interaction_energy(self, bsse_type: str) -> Optional[float]:
        """The interaction energy through this level for one BSSE treatment (``"cp"``, ``"nocp"``, ``"vmfc"``)."""
        prefix = {"cp": "cp_corrected", "nocp": "nocp_corrected", "vmfc": "vmfc_corrected"}[bsse_type]
        return self.properties.get(f"{prefix}_interaction_energy_through_{self.nbody}_body")


def component_properties(labels: Sequence[str], outputs: Iterable[FragmentOutput]) -> Dict[str, Dict[str, Any]]:
    """{label: {energy, gradient, hessian}} in ``labels`` order (QCManyBody's iteration order)."""
    by_label = {out.label: out.properties for out in outputs}
    return {label: by_label[label] for label in labels if label in by_label}


def level_result(
    normalized: NormalizedInput, nbody: int, labels: Sequence[str], outputs: List[FragmentOutput]
) -> LevelResult:
    """Analyze the expansion truncated at ``nbody`` with the results of the calculations it needs."""
    with _embedding_accepted(normalized):
        core = truncated_core(qcmb_computer(normalized), nbody)
    analyzed = core.analyze(component_properties(labels, outputs))
    return LevelResult(
        nbody=nbody,
        ncalculations=len(labels),
        properties=dict(analyzed["results"]),
        energy_body_dict=dict(analyzed["energy_body_dict"]),
        return_energy=analyzed["ret_energy"],
    )


def final_result(normalized: NormalizedInput, labels: Sequence[str], outputs: List[FragmentOutput], levels: Any = None):
    """The ManyBodyResult, assembled by QCManyBody's computer from the fragment results.

    ``levels`` (the truncated results) is accepted so that the level nodes are part of the graph the
    user computes or visualizes; the full analysis does not need them.
    """
    with _embedding_accepted(normalized):
        computer = qcmb_computer(normalized)
    props = component_properties(labels, outputs)
    analyzed = computer.qcmb_core.analyze(props)
    analyzed["nbody_number"] = len(props)
    atomic_results = {out.label: out.atomic_result for out in outputs if out.atomic_result is not None}
    cluster_results = {label: atomic_results[label] for label in labels if label in atomic_results}
    result = computer.get_results(external_results=analyzed, component_results=cluster_results)
    return result.convert_v(1) if normalized.result_schema_version == 1 else result


@contextlib.contextmanager
def _embedding_accepted(normalized: NormalizedInput):
    """QCManyBody accepts embedding charges only with QCMANYBODY_EMBEDDING_CHARGES set. The client checked
    that when it planned; a worker on another node may lack the variable, so the analysis sets it."""
    if not normalized.model.specification.keywords.embedding_charges or os.environ.get("QCMANYBODY_EMBEDDING_CHARGES"):
        yield
        return
    os.environ["QCMANYBODY_EMBEDDING_CHARGES"] = "1"
    try:
        yield
    finally:
        os.environ.pop("QCMANYBODY_EMBEDDING_CHARGES", None)
