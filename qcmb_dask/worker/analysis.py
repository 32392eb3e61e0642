"""Fragment results -> QCManyBody's ``ManyBodyCore.analyze`` -> ManyBodyResult (and k-body truncations).

The arithmetic is QCManyBody's own; this module only gathers what the fragments returned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from qcmb_dask.errors import FragmentError, FragmentsFailed
from qcmb_dask.qcmanybody_adapter import NormalizedInput, accept_embedding_charges, qcmb_computer, truncated_core
from qcmb_dask.worker import screened as screened_assembly
from qcmb_dask.worker.fragment import FragmentFailure, FragmentOutput

if TYPE_CHECKING:
    from qcmanybody.models.v1 import ManyBodyResult as ManyBodyResultV1
    from qcmanybody.models.v2 import ManyBodyResult


@dataclass
class LevelResult:
    """The MBE truncated at ``nbody``: available as soon as every calculation of levels <= nbody is done.

    ``properties`` holds QCManyBody's property names through this level, e.g.
    ``cp_corrected_interaction_energy_through_2_body``; ``energy_body_dict`` is keyed like ``"2cp"``.
    """

    nbody: int
    ncalculations: int
    properties: dict[str, Any]
    energy_body_dict: dict[str, float]
    return_energy: float

    def interaction_energy(self, bsse_type: str) -> float | None:
        """The interaction energy through this level for one BSSE treatment (``"cp"``, ``"nocp"``, ``"vmfc"``)."""
        prefix = {"cp": "cp_corrected", "nocp": "nocp_corrected", "vmfc": "vmfc_corrected"}[bsse_type]
        return self.properties.get(f"{prefix}_interaction_energy_through_{self.nbody}_body")


@dataclass
class LevelIncomplete:
    """The truncation at ``nbody`` cannot be assembled: some calculation it needs failed."""

    nbody: int
    ncalculations: int
    failed: list[str]


@dataclass
class RunStats:
    """Where the fragment results came from, and what went wrong with keeping them."""

    computed: int = 0
    from_store: int = 0
    #: label -> the convergence fallback keywords that result needed
    escalated: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: why results could not be stored (first few), and how many
    store_errors: list[str] = field(default_factory=list)
    store_error_count: int = 0


@dataclass
class Outcome:
    """What the final node returns: the ManyBodyResult, or None and every failure."""

    result: Any
    failures: list[FragmentError]
    stats: RunStats
    levels: dict[int, LevelResult]


@dataclass
class PartialResult:
    """``on_error="partial"``: the highest n-body truncation that could be assembled, and what failed.

    It round-trips through JSON as the results do: ``PartialResult.model_validate_json(p.model_dump_json())``.
    """

    #: the highest complete truncation; None when not even the 1-body level is complete
    level: LevelResult | None
    levels: dict[int, LevelResult]
    failures: list[FragmentError]
    stats: RunStats
    #: ``{"qcmb_dask": ...}``: how the run was made, as in a ManyBodyResult's extras
    extras: dict[str, Any] = field(default_factory=dict)

    #: tells a saved PartialResult from a saved ManyBodyResult
    schema_name = "qcmb_dask_partial_result"

    @property
    def nbody(self) -> int:
        return self.level.nbody if self.level else 0

    def model_dump(self) -> dict[str, Any]:
        """Plain JSON types: levels, failures (every field of each), statistics and extras."""
        return {
            "schema_name": self.schema_name,
            "nbody": self.nbody,
            "levels": {str(n): _level_dict(level) for n, level in sorted(self.levels.items())},
            "failures": [{name: getattr(f, name) for name in FAILURE_FIELDS} for f in self.failures],
            "stats": {
                "computed": self.stats.computed,
                "from_store": self.stats.from_store,
                "escalated": self.stats.escalated,
                "store_errors": self.stats.store_errors,
                "store_error_count": self.stats.store_error_count,
            },
            "extras": _plain(self.extras),
        }

    def model_dump_json(self, indent: int | None = None) -> str:
        import json

        return json.dumps(self.model_dump(), indent=indent)

    @classmethod
    def model_validate(cls, data: dict[str, Any]) -> PartialResult:
        if data.get("schema_name") != cls.schema_name:
            raise ValueError(f"not a saved PartialResult (schema_name {data.get('schema_name')!r})")
        levels = {int(n): LevelResult(**_arrays(level)) for n, level in data["levels"].items()}
        failures = [FragmentError(**{name: f.get(name) for name in FAILURE_FIELDS}) for f in data["failures"]]
        highest = levels[max(levels)] if levels else None
        return cls(highest, levels, failures, RunStats(**data["stats"]), dict(data.get("extras") or {}))

    @classmethod
    def model_validate_json(cls, text: str) -> PartialResult:
        import json

        return cls.model_validate(json.loads(text))


#: the fields of a FragmentError, in its constructor's order
FAILURE_FIELDS = ("label", "nbody", "program", "method", "basis", "error_type", "message", "record")


#: what ``compute`` returns: QCManyBody's result (of the input's schema version), or the levels that could be
#: assembled with ``on_error="partial"``
Result = Union["ManyBodyResult", "ManyBodyResultV1", PartialResult]  # noqa: UP007  (a runtime alias, read on 3.10)


def _level_dict(level: LevelResult) -> dict[str, Any]:
    return {
        "nbody": level.nbody,
        "ncalculations": level.ncalculations,
        "properties": _plain(level.properties),
        "energy_body_dict": _plain(level.energy_body_dict),
        "return_energy": float(level.return_energy),
    }


def _plain(value):
    """Numpy arrays and scalars as lists and floats, through dicts and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _arrays(level: dict[str, Any]) -> dict[str, Any]:
    """A level dict read back: gradients and Hessians (lists) as numpy arrays again, as the analysis made them."""
    import numpy as np

    properties = {k: np.asarray(v) if isinstance(v, list) else v for k, v in level["properties"].items()}
    return {**level, "properties": properties}


def summarize(outputs: Iterable[FragmentOutput | FragmentFailure]) -> tuple:
    """(RunStats, failures) over fragment outputs."""
    stats, failures = RunStats(), []
    for out in outputs:
        if isinstance(out, FragmentFailure):
            failures.append(out.error)
            continue
        if out.from_store:
            stats.from_store += 1
        else:
            stats.computed += 1
        if out.escalated:
            stats.escalated[out.label] = out.escalated
        if out.store_error:
            stats.store_error_count += 1
            if len(stats.store_errors) < 3:
                stats.store_errors.append(out.store_error)
    return stats, failures


def component_properties(
    labels: Sequence[str], outputs: Iterable[FragmentOutput], output_labels: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """{label: {energy, gradient, hessian}} in ``labels`` order (QCManyBody's iteration order). ``output_labels``
    names each output by this input's labels: an output computed once for several inputs carries the label
    it has in the first of them."""
    by_label = {label: out.properties for label, out in zip(output_labels, outputs)}
    return {label: by_label[label] for label in labels if label in by_label}


def level_result(
    normalized: NormalizedInput,
    nbody: int,
    labels: Sequence[str],
    outputs: list[FragmentOutput],
    output_labels: Sequence[str],
    screened: bool = False,
) -> LevelResult | LevelIncomplete:
    """Analyze the expansion truncated at ``nbody`` with the results of the calculations it needs
    (``output_labels``: what this input calls each of ``outputs``; ``screened``: a distance-screened expansion,
    whose dropped k-mers :mod:`qcmb_dask.worker.screened` completes)."""
    failed = [label for label, out in zip(output_labels, outputs) if isinstance(out, FragmentFailure)]
    if failed:
        return LevelIncomplete(nbody, len(labels), failed)
    accept_embedding_charges(normalized)
    core = truncated_core(qcmb_computer(normalized), nbody)
    properties = component_properties(labels, outputs, output_labels)
    if screened:
        properties, _ = screened_assembly.complete(core, properties)
    analyzed = core.analyze(properties)
    return LevelResult(
        nbody=nbody,
        ncalculations=len(labels),
        properties=dict(analyzed["results"]),
        energy_body_dict=dict(analyzed["energy_body_dict"]),
        return_energy=analyzed["ret_energy"],
    )


def final_outcome(
    normalized: NormalizedInput, labels: Sequence[str], outputs: list, levels: Sequence = (), screening=None
) -> Outcome:
    """The ManyBodyResult and the run's statistics; with failed fragments, no result and every failure.
    ``screening``: a screened expansion's cutoffs and kept k-mers (``Screening.for_analysis()``)."""
    stats, failures = summarize(outputs)
    complete = {level.nbody: level for level in levels if isinstance(level, LevelResult)}
    if failures:
        return Outcome(None, failures, stats, complete)
    return Outcome(final_result(normalized, labels, outputs, screening), [], stats, complete)


def final_result(normalized: NormalizedInput, labels: Sequence[str], outputs: list[FragmentOutput], screening=None):
    """The ManyBodyResult, assembled by QCManyBody's computer from the fragment results (for a screened
    expansion, completed first: :mod:`qcmb_dask.worker.screened`; its report goes to ``extras["qcmb_dask"]``)."""
    accept_embedding_charges(normalized)
    computer = qcmb_computer(normalized)
    props = component_properties(labels, outputs, labels)
    computed = len(props)
    report = None
    if screening is not None:
        props, increments = screened_assembly.complete(computer.qcmb_core, props)
        report = screened_assembly.report(screening, increments)
    analyzed = computer.qcmb_core.analyze(props)
    analyzed["nbody_number"] = computed
    if report is not None:  # the result lists the calculations that ran, not the completion's stand-ins
        ran = set(labels)
        analyzed["component_properties"] = {k: v for k, v in analyzed["component_properties"].items() if k in ran}
        if any(report["dropped"].values()):
            without_counterpoise_by_products(analyzed, computer)
    atomic_results = {label: out.atomic_result for label, out in zip(labels, outputs) if out.atomic_result is not None}
    cluster_results = {label: atomic_results[label] for label in labels if label in atomic_results}
    result = computer.get_results(external_results=analyzed, component_results=cluster_results)
    if report is not None:
        extras = {**(result.extras or {}), "qcmb_dask": {"screening": report}}
        result = result.model_copy(update={"extras": extras})
    return result.convert_v(1) if normalized.result_schema_version == 1 else result


def without_counterpoise_by_products(analyzed: dict, computer) -> None:
    """A vmfc run that dropped k-mers: QCManyBody derives CP values from the vmfc calculations too, which a screened
    expansion does not define (CP's monomers in the basis of larger clusters mix k-mers): they are left out."""
    if "cp" in {bt.value for bt in computer.bsse_type}:
        return
    analyzed["results"] = {k: v for k, v in analyzed["results"].items() if not k.startswith("cp_")}
    analyzed["energy_body_dict"] = {k: v for k, v in analyzed["energy_body_dict"].items() if not k.endswith("cp")}
    text = analyzed.get("stdout") or ""
    start = text.find("==> N-Body: Counterpoise Corrected (CP)")
    if start >= 0:
        end = text.find("==> ", start + 4)
        head = text[: text.rfind("\n", 0, start) + 1]
        analyzed["stdout"] = head + (text[text.rfind("\n", 0, end) + 1 :] if end >= 0 else "")


def answer(outcome: Outcome):
    """The ManyBodyResult of an outcome, or :class:`FragmentsFailed` (``build_graph``'s last node)."""
    if outcome.failures:
        raise FragmentsFailed(outcome.failures, levels_done=sorted(outcome.levels))
    return outcome.result
