"""What people check before they trust a package: its license, version, typing marker, citation and changelog."""

import inspect
from importlib import metadata, resources
from pathlib import Path

import yaml

import qcmb_dask

ROOT = Path(__file__).resolve().parent.parent


def test_the_license_the_metadata_names_is_shipped():
    assert metadata.metadata("qcmb_dask")["License-Expression"] == "BSD-3-Clause"
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text()


def test_the_version_is_the_installed_metadata_and_the_changelog_and_citation_name_it():
    assert qcmb_dask.__version__ == metadata.version("qcmb_dask")
    assert f"## {qcmb_dask.__version__} " in (ROOT / "CHANGELOG.md").read_text()
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["version"] == qcmb_dask.__version__
    cited = " ".join(ref["title"] for ref in citation["references"])
    assert all(name in cited for name in ("QCManyBody", "QCArchive", "PySCF"))


def test_typed_marker_and_return_annotations_on_the_public_api():
    assert (resources.files("qcmb_dask") / "py.typed").is_file()
    unannotated = []
    for name in qcmb_dask.__all__:
        value = getattr(qcmb_dask, name)
        functions = [value] if inspect.isfunction(value) else []
        if inspect.isclass(value) and not issubclass(value, BaseException):
            functions = [
                f
                for attr, f in vars(value).items()
                if not attr.startswith("_") and isinstance(f, (classmethod, staticmethod))
            ]
            functions = [f.__func__ for f in functions]
        for function in functions:
            if inspect.signature(function).return_annotation is inspect.Signature.empty:
                unannotated.append(f"{name}.{function.__name__}")
    assert unannotated == []
