"""Accept a many-body input in any form users have it, and normalize it to one QCManyBody v2 model.

Nothing here talks to Dask or runs a QC program: errors surface before anything is submitted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from qcmanybody.models.v2 import ManyBodyInput

InputLike = Union[ManyBodyInput, "qcmanybody.models.v1.ManyBodyInput", dict, str, Path]  # noqa: F821


@dataclass(frozen=True)
class NormalizedInput:
    """The input as a QCManyBody v2 model, and the schema version the result must have."""

    model: ManyBodyInput
    result_schema_version: int


def normalize(data: Any) -> NormalizedInput:
    """A ``ManyBodyInput`` (v1 or v2), a dict or a JSON/YAML path -> :class:`NormalizedInput`.

    v1 in gives v1 out; a v2 model, a dict or a file give v2.
    """
    if isinstance(data, ManyBodyInput):
        return NormalizedInput(data, 2)
    v1_model = _v1_input_class()
    if v1_model is not None and isinstance(data, v1_model):
        return NormalizedInput(data.convert_v(2), 1)
    if isinstance(data, (str, Path)):
        data = read_input_file(Path(data))
    if isinstance(data, dict):
        return NormalizedInput(ManyBodyInput(**fill_fragment_charges(data)), 2)
    raise TypeError(
        f"qcmb_dask cannot use an input of type {type(data).__name__}: give a qcmanybody ManyBodyInput "
        "(v1 or v2), a dict in its layout, or the path of a JSON or YAML file."
    )


def fill_fragment_charges(data: dict) -> dict:
    """Give a neutral input's fragments explicit charges (0) and multiplicities (from electron parity).

    Without them QCElemental searches every distribution of charge and spin over the fragments,
    which takes time and memory exponential in the fragment count (26 fragments: 18 GB). With a
    net charge there is no safe guess, so the user is asked for them. Returns a new dict.
    """
    molecule = data.get("molecule")
    if not isinstance(molecule, dict) or len(molecule.get("fragments") or []) < 2:
        return data
    if molecule.get("fragment_charges") is not None and molecule.get("fragment_multiplicities") is not None:
        return data
    fragments = molecule["fragments"]
    filled = dict(molecule)
    if filled.get("fragment_charges") is None:
        total = float(molecule.get("molecular_charge", 0) or 0)
        if abs(total) > 1e-8:
            raise ValueError(
                f"The molecule has a net charge of {total:g} but no fragment_charges: give the charge of each of its "
                f'{len(fragments)} fragments (e.g. "fragment_charges": [1, 0, 0, ...]) and, for open shells, '
                "fragment_multiplicities. Guessing them would be an exponential search over all distributions."
            )
        filled["fragment_charges"] = [0.0] * len(fragments)
    if filled.get("fragment_multiplicities") is None:
        from qcelemental import periodictable

        symbols = molecule["symbols"]
        real = molecule.get("real") or [True] * len(symbols)
        multiplicities = []
        for atoms, charge in zip(fragments, filled["fragment_charges"]):
            electrons = sum(periodictable.to_Z(symbols[i]) for i in atoms if real[i]) - charge
            multiplicities.append(1 if round(electrons) % 2 == 0 else 2)
        filled["fragment_multiplicities"] = multiplicities
    return {**data, "molecule": filled}


def read_input_file(path: Path) -> dict:
    """Read a ManyBodyInput dict from a ``.json``, ``.yaml`` or ``.yml`` file, with errors that name the file."""
    if not path.is_file():
        raise FileNotFoundError(f"Many-body input file {str(path)!r} does not exist.")
    text = path.read_text()
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as err:  # json.JSONDecodeError, yaml.YAMLError
        raise ValueError(f"Could not parse many-body input file {str(path)!r}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(
            f"Many-body input file {str(path)!r} must hold one ManyBodyInput object, got {type(data).__name__}."
        )
    return data


def _v1_input_class():
    try:
        from qcmanybody.models.v1 import ManyBodyInput as ManyBodyInputV1
    except Exception:  # pydantic.v1 unavailable (Python 3.14+): no v1 inputs can exist either
        return None
    return ManyBodyInputV1
