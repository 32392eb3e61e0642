"""inputs.normalize: every form of input users have, and errors that name the problem."""

import json

import pytest
import yaml
from qcmanybody.models.v2 import ManyBodyInput

from qcmb_dask.planning.inputs import normalize

from .conftest import mbe_input


def test_v2_model_dict_and_files_normalize_to_the_same_v2_model(tmp_path):
    data = mbe_input(2)
    json_path = tmp_path / "mbe.json"
    json_path.write_text(json.dumps(data))
    yaml_path = tmp_path / "mbe.yaml"
    yaml_path.write_text(yaml.safe_dump(data))

    forms = [ManyBodyInput(**data), data, json_path, str(yaml_path)]
    normalized = [normalize(f) for f in forms]
    assert all(n.result_schema_version == 2 for n in normalized)
    assert len({n.model.model_dump_json() for n in normalized}) == 1


def test_v1_model_gives_v1_results():
    from qcmanybody.models.v1 import ManyBodyInput as ManyBodyInputV1

    v1 = ManyBodyInput(**mbe_input(2)).convert_v(1)
    assert isinstance(v1, ManyBodyInputV1)
    normalized = normalize(v1)
    assert normalized.result_schema_version == 1
    assert isinstance(normalized.model, ManyBodyInput)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        normalize(tmp_path / "nope.json")


def test_malformed_file_names_the_path(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(ValueError, match="bad.json"):
        normalize(bad)


def test_unknown_input_type_says_what_is_accepted():
    with pytest.raises(TypeError, match="ManyBodyInput"):
        normalize(42)


def test_neutral_dict_without_fragment_charges_is_filled_not_searched():
    """24 fragments without charges take QCElemental ~17 s and 4 GB to validate; filled, milliseconds."""
    import time

    from .conftest import water_cluster

    waters = water_cluster(3)
    mol = {
        "symbols": waters["symbols"] * 8,
        "geometry": [x + 20.0 * i for i in range(8) for x in waters["geometry"]],  # 8 trimers 20 Bohr apart
        "fragments": [[3 * i, 3 * i + 1, 3 * i + 2] for i in range(24)],
        "molecular_charge": 0,
    }
    data = mbe_input(2)
    data["molecule"] = mol
    start = time.perf_counter()
    normalized = normalize(data)
    assert time.perf_counter() - start < 5
    assert normalized.model.molecule.fragment_charges == [0.0] * 24
    assert normalized.model.molecule.fragment_multiplicities == [1] * 24


def test_open_shell_fragment_gets_a_doublet():
    data = mbe_input(2)
    mol = data["molecule"]
    del mol["fragment_charges"], mol["fragment_multiplicities"]
    mol["symbols"] = mol["symbols"][:5]  # water + OH radical
    mol["geometry"] = mol["geometry"][:15]
    mol["fragments"] = [[0, 1, 2], [3, 4]]
    mol["molecular_multiplicity"] = 2
    assert normalize(data).model.molecule.fragment_multiplicities == [1, 2]


def test_charged_input_without_fragment_charges_gets_qcelementals_choice_and_a_warning():
    """QCElemental puts the charge on the first fragment that can take it; so do we, and we say so."""
    from qcelemental.models import Molecule

    from qcmb_dask.errors import InputWarning

    data = mbe_input(2)
    mol = data["molecule"]
    del mol["fragment_charges"], mol["fragment_multiplicities"]
    mol["molecular_charge"] = 1
    reference = Molecule(**mol)
    with pytest.warns(InputWarning, match=r"chose: fragment 1 charge \+1\. .*give fragment_charges"):
        ours = normalize(data).model.molecule
    assert ours.fragment_charges == reference.fragment_charges == [1.0, 0.0]
    assert ours.fragment_multiplicities == reference.fragment_multiplicities == [2, 1]
    assert ours.molecular_multiplicity == reference.molecular_multiplicity


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path):
    """Nine levels of ten aliases: a 1 kB file that expands to 10^9 values inside molecule.extras."""
    import qcmb_dask
    from qcmb_dask.errors import InvalidInput

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    data = mbe_input(2)
    text = yaml.safe_dump(data).replace("molecule:\n", "molecule:\n  extras:\n    bomb: *a9\n", 1)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n" + text)
    assert bomb.stat().st_size < 10_000
    with pytest.raises(InvalidInput, match=r"bomb\.yaml.*aliases \(\*name\) expand to \d\.\d+e\+(09|10) values"):
        qcmb_dask.plan(bomb, cache=False)
    looping = tmp_path / "loop.yaml"
    looping.write_text("a: &a [1, *a]\n")
    with pytest.raises(InvalidInput, match="refers to a value that contains it"):
        normalize(looping)


def test_a_few_aliases_are_fine_and_huge_files_are_refused_unread(tmp_path, monkeypatch):
    from qcmb_dask.errors import InvalidInput
    from qcmb_dask.planning import inputs

    data = mbe_input(2)
    text = yaml.safe_dump(data)
    shared = tmp_path / "shared.yaml"
    text = text.replace("molecule:\n", "molecule:\n  extras:\n    model: &model {method: hf, basis: sto-3g}\n", 1)
    shared.write_text(text.replace("model:\n        basis: sto-3g\n        method: hf\n", "model: *model\n"))
    assert "*model" in shared.read_text()
    ours = normalize(shared).model
    assert ours.specification == normalize(data).model.specification
    assert ours.molecule.extras == {"model": {"method": "hf", "basis": "sto-3g"}}
    monkeypatch.setattr(inputs, "MAX_INPUT_BYTES", 100)
    with pytest.raises(
        InvalidInput, match=r"shared\.yaml' is [\d,]+ bytes; many-body input files are at most 100 bytes"
    ):
        normalize(shared)
