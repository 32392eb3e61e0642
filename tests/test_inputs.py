"""inputs.normalize: every form of input users have, and errors that name the problem."""

import json

import pytest
import yaml
from qcmanybody.models.v2 import ManyBodyInput

from qcmb_dask.inputs import normalize

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
