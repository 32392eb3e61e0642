"""Results where people analyse them: read a saved result back, and the per-level, per-BSSE table.

result = qcmb_dask.load_result("result.json")     # ManyBodyResult (v1 or v2) or PartialResult
rows = qcmb_dask.table(result)                    # one dict per (BSSE treatment, n-body level)
frame = qcmb_dask.table(result, as_frame=True)    # the same as a pandas DataFrame
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas

    from qcmb_dask.worker.analysis import Result

from qcmb_dask.errors import InvalidArgument
from qcmb_dask.qcmanybody_adapter import hartree_to_kcal

BSSE_PREFIX = {"cp": "cp_corrected", "nocp": "nocp_corrected", "vmfc": "vmfc_corrected"}

#: the columns of :func:`table`, in order
COLUMNS = (
    "bsse",
    "nbody",
    "interaction_energy",
    "interaction_energy_kcal",
    "contribution",
    "contribution_kcal",
    "total_energy",
)


def load(path: str | Path) -> Result:
    """A result saved as JSON (``qcmb-dask run --out``, ``result.model_dump_json()``): a ``ManyBodyResult`` of
    the schema version it was saved with, or a :class:`~qcmb_dask.PartialResult`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no result file {str(path)!r}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InvalidArgument(f"{str(path)!r} is not JSON ({err}); give a file written by run --out.") from None
    return from_dict(data, str(path))


def from_dict(data: Any, where: str = "the result") -> Result:
    from qcmb_dask.worker.analysis import PartialResult

    if not isinstance(data, dict):
        raise InvalidArgument(f"{where}: expected a saved ManyBodyResult or PartialResult, got {type(data).__name__}.")
    if data.get("schema_name") == PartialResult.schema_name:
        return PartialResult.model_validate(data)
    if data.get("schema_name") != "qcschema_many_body_result":
        raise InvalidArgument(
            f"{where}: not a many-body result (schema_name {data.get('schema_name')!r}); give a file written by "
            "qcmb-dask run --out or by result.model_dump_json()."
        )
    if data.get("schema_version") == 1:
        from qcmanybody.models.v1 import ManyBodyResult

        return ManyBodyResult(**data)
    from qcmanybody.models.v2 import ManyBodyResult

    return ManyBodyResult.model_validate(data)


def properties_of(result) -> dict[str, Any]:
    """Every property name -> value of a ManyBodyResult; of a PartialResult, those of its complete levels."""
    from qcmb_dask.worker.analysis import PartialResult

    if isinstance(result, PartialResult):
        merged: dict[str, Any] = {}
        for _, level in sorted(result.levels.items()):
            merged.update({k: v for k, v in level.properties.items() if v is not None})
        return merged
    props = result.properties
    return props.model_dump() if hasattr(props, "model_dump") else dict(props.dict())


def bsse_types_of(result) -> list[str]:
    from qcmb_dask.worker.analysis import PartialResult

    if isinstance(result, PartialResult):
        found = {bt for bt, prefix in BSSE_PREFIX.items() for key in properties_of(result) if key.startswith(prefix)}
        return [bt for bt in BSSE_PREFIX if bt in found]
    return [getattr(b, "value", b) for b in result.input_data.specification.keywords.bsse_type]


def table(result: Result | str | Path, as_frame: bool = False) -> list[dict[str, Any]] | pandas.DataFrame:
    """One row per BSSE treatment and n-body level: the interaction energy through that level (Eh and kcal/mol),
    that level's contribution, and the total energy through it (Eh). Missing values are None.

    ``result``: a ManyBodyResult, a PartialResult (its complete levels), or the path of a saved one.
    ``as_frame=True``: a pandas DataFrame with the same columns (:data:`COLUMNS`).
    """
    if isinstance(result, (str, Path)):
        result = load(result)
    props = properties_of(result)
    kcal = hartree_to_kcal()
    rows = []
    for bt in bsse_types_of(result):
        prefix = BSSE_PREFIX[bt]
        levels = sorted(
            int(key[len(prefix) + len("_interaction_energy_through_") :].split("_")[0])
            for key, value in props.items()
            if key.startswith(f"{prefix}_interaction_energy_through_") and value is not None
        )
        for n in levels:
            ie = props.get(f"{prefix}_interaction_energy_through_{n}_body")
            contribution = props.get(f"{prefix}_{n}_body_contribution_to_energy")
            rows.append(
                {
                    "bsse": bt,
                    "nbody": n,
                    "interaction_energy": ie,
                    "interaction_energy_kcal": None if ie is None else ie * kcal,
                    "contribution": contribution,
                    "contribution_kcal": None if contribution is None else contribution * kcal,
                    "total_energy": props.get(f"{prefix}_total_energy_through_{n}_body"),
                }
            )
    if not as_frame:
        return rows
    try:
        import pandas
    except ImportError:
        raise ImportError("table(..., as_frame=True) needs pandas: pip install pandas") from None
    return pandas.DataFrame(rows, columns=list(COLUMNS))


def text_table(rows: list[dict[str, Any]], total: float | None = None) -> str:
    """The rows as the terminal shows them (``qcmb-dask run``, ``qcmb-dask table``)."""
    lines = [f"{'BSSE':<6}{'n-body':>7}{'IE (Eh)':>18}{'IE (kcal/mol)':>16}"]
    lines += [
        f"{row['bsse'].upper():<6}{row['nbody']:>7}{row['interaction_energy']:>18.10f}"
        f"{row['interaction_energy_kcal']:>16.4f}"
        for row in rows
    ]
    if not rows:
        lines.append(f"(no interaction energies{'' if total is None else f'; total {total}'})")
    return "\n".join(lines)


def csv_table(rows: list[dict[str, Any]]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


#: ``qcmb_dask.load_result``
load_result = load
