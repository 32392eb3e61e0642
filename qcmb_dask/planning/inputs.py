"""Accept a many-body input in any form users have it, and normalize it to one QCManyBody v2 model.

Nothing here talks to Dask or runs a QC program: errors surface before anything is submitted.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Union

from qcmanybody.models.v2 import ManyBodyInput

from qcmb_dask.errors import InputFileMissing, InputOfWrongType, InvalidInput
from qcmb_dask.qcmanybody_adapter import NormalizedInput

InputLike = Union[ManyBodyInput, "qcmanybody.models.v1.ManyBodyInput", dict, str, Path]  # noqa: F821


def normalize(data: Any) -> NormalizedInput:
    """A ``ManyBodyInput`` (v1 or v2), a dict or a JSON/YAML path -> :class:`NormalizedInput`.

    v1 in gives v1 out; a v2 model, a dict or a file give v2.
    """
    if isinstance(data, NormalizedInput):
        return data
    if isinstance(data, ManyBodyInput):
        return NormalizedInput(data, 2)
    v1_model = _v1_input_class()
    if v1_model is not None and isinstance(data, v1_model):
        return NormalizedInput(data.convert_v(2), 1)
    if isinstance(data, (str, Path)):
        path = Path(data)
        if is_molecule_file(path):
            raise InvalidInput(
                f"{str(path)!r} holds a molecule only; a many-body input also needs a model chemistry: on the "
                "command line give --method and --basis (qcmb-dask run cluster.xyz --method hf --basis 6-31g), in "
                "Python build one with qcmb_dask.manybody_input(path, method=..., basis=...)."
            )
        data = read_input_file(path)
    if isinstance(data, dict):
        return NormalizedInput(ManyBodyInput(**_checked_and_completed(data)), 2)
    raise InputOfWrongType(
        f"qcmb_dask cannot use an input of type {type(data).__name__}: give a qcmanybody ManyBodyInput "
        "(v1 or v2), a dict in its layout, or the path of a JSON or YAML file."
    )


def _checked_and_completed(data: dict) -> dict:
    """The dict with its molecule checked and its charges completed as QCElemental would (a new dict)."""
    from qcmb_dask.planning import molecule as molecule_input
    from qcmb_dask.planning import validate

    validate.check_specification_dict(data.get("specification"))
    molecule = data.get("molecule")
    if isinstance(molecule, str):  # Psi4's format: '--' between fragments, 'units angstrom'
        from qcmb_dask.planning.molecule_text import from_psi4_string

        molecule = from_psi4_string(molecule)
    molecule_input.check(molecule)
    return {**data, "molecule": molecule_input.complete_charges(molecule)}


#: file name endings read as a molecule (not a whole input): XYZ, and Psi4-style molecule strings
XYZ_SUFFIXES = (".xyz",)
MOLECULE_STRING_SUFFIXES = (".psi4", ".molstr", ".txt")


def is_molecule_file(path: Path) -> bool:
    return path.suffix.lower() in XYZ_SUFFIXES + MOLECULE_STRING_SUFFIXES


def read_molecule(molecule, fragments: Any = "auto") -> dict:
    """A molecule given any way -> a QCSchema molecule dict: a dict (as it is), a Psi4-style string, or the path
    of an ``.xyz`` file (Angstrom; ``fragments``: "auto" or atom ranges) or of a Psi4-style string file."""
    from qcmb_dask.planning.molecule_text import from_psi4_string, from_xyz

    if isinstance(molecule, dict):
        return molecule
    if not isinstance(molecule, (str, Path)):
        raise InputOfWrongType(
            f"molecule: expected a Psi4-style string, the path of an .xyz or molecule-string file, or a QCSchema "
            f"molecule dict, got {type(molecule).__name__}."
        )
    if not (fragments in ("auto", None) or isinstance(fragments, (str, list, tuple))):
        raise InputOfWrongType(
            f"fragments: expected 'auto', atom ranges such as '0-2,3-5', or a list of atom-index lists, got "
            f"{fragments!r}."
        )
    if isinstance(molecule, Path) or (isinstance(molecule, str) and "\n" not in molecule):
        path = Path(molecule)
        _check_is_file(path, "molecule file")
        text = path.read_text()
        if path.suffix.lower() in XYZ_SUFFIXES:
            return from_xyz(text, fragments, where=str(path))
        molecule = text
    if fragments not in ("auto", None):
        raise InvalidInput("fragments: a Psi4-style molecule string gives its fragments with '--' lines.")
    return from_psi4_string(molecule)


def manybody_input(
    molecule,
    *,
    method: str,
    basis: str | None = None,
    program: str = "pyscf",
    bsse_type: str | list[str] = "cp",
    max_nbody: int | None = None,
    driver: str = "energy",
    keywords: dict | None = None,
    fragments: Any = "auto",
) -> dict:
    """A ManyBodyInput dict (v2) from a molecule and one model chemistry: what ``qcmb-dask run cluster.xyz
    --method ... --basis ...`` runs. ``molecule``: a Psi4-style string (``--`` between fragments), the path of an
    ``.xyz`` file (fragments ``"auto"``: one per connected molecule, or ranges ``"0-2,3-5"``) or of a string
    file, or a QCSchema molecule dict. ``max_nbody`` defaults to the number of fragments (QCManyBody's default).
    ``basis``: None only for a method with a basis of its own (``program="tblite"``, ``method="gfn2-xtb"``).

    Examples
    --------
    >>> mbin = qcmb_dask.manybody_input("cluster.xyz", method="mp2", basis="cc-pvdz", max_nbody=3)  # doctest: +SKIP
    >>> result = qcmb_dask.compute(mbin)                                                            # doctest: +SKIP
    """
    mbe_keywords: dict[str, Any] = {"bsse_type": bsse_type}
    if max_nbody is not None:
        mbe_keywords["max_nbody"] = max_nbody
    return {
        "molecule": read_molecule(molecule, fragments),
        "specification": {
            "driver": driver,
            "keywords": mbe_keywords,
            "specification": {
                "(auto)": {
                    "program": program,
                    "driver": driver,
                    "model": {"method": method, "basis": basis},
                    "keywords": dict(keywords or {}),
                }
            },
        },
    }


#: Larger input files are refused unread: a many-body input of 10^5 atoms is about 10 MB of JSON.
MAX_INPUT_BYTES = 64 * 2**20
#: YAML aliases can make a small file expand without bound ("billion laughs"); past this many nodes it is refused.
MAX_YAML_NODES = 10_000_000


def read_input_file(path: Path) -> dict:
    """Read a ManyBodyInput dict from a ``.json``, ``.yaml`` or ``.yml`` file, with errors that name the file."""

    _check_is_file(path, "many-body input file")
    size = path.stat().st_size
    if size > MAX_INPUT_BYTES:
        raise InvalidInput(
            f"{str(path)!r} is {size:,} bytes; many-body input files are at most {MAX_INPUT_BYTES:,} bytes. "
            "Is it the right file?"
        )
    text = path.read_text()
    try:
        data = _load_yaml(text) if path.suffix.lower() in (".yaml", ".yml") else load_json(text)
    except InvalidInput as err:
        raise InvalidInput(f"{str(path)!r}: {err.problem}") from None
    except Exception as err:  # json.JSONDecodeError, yaml.YAMLError, RecursionError (nesting)
        raise InvalidInput(f"could not parse many-body input file {str(path)!r}: {err}") from err
    if not isinstance(data, dict):
        raise InvalidInput(
            f"many-body input file {str(path)!r} must hold one ManyBodyInput object, got {type(data).__name__}."
        )
    return data


class _RepeatedKey(Exception):
    def __init__(self, key: str, siblings: list[str]):
        self.key, self.siblings = key, siblings


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict:
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise _RepeatedKey(key, list(dict.fromkeys(keys)))
    return dict(pairs)


def load_json(text: str) -> Any:
    """``json.loads``, refusing an object that gives one key twice (``json`` keeps the last without a word, so a
    geometry pasted above the old one would run one of them silently)."""
    try:
        return json.loads(text, object_pairs_hook=_refuse_repeated_keys)
    except _RepeatedKey as repeated:
        pattern = re.compile(r'"' + re.escape(repeated.key) + r'"\s*:')
        lines = [text.count("\n", 0, m.start()) + 1 for m in pattern.finditer(text)]
        where = f" (lines {', '.join(map(str, lines))})" if len(set(lines)) > 1 and len(lines) <= 6 else ""
        raise InvalidInput(
            f"the key {repeated.key!r} appears more than once in one object{where}, among the keys "
            f"{', '.join(repeated.siblings)}; JSON keeps only the last, so delete the one you do not mean."
        ) from None


def _check_is_file(path: Path, what: str) -> None:
    if path.is_dir():
        raise InputFileMissing(
            f"{what} {str(path)!r} is a directory, not a file: give one file in it, or, for every input file in a "
            "directory, qcmb-dask run DIRECTORY (in Python, qcmb_dask.compute_many([...]))."
        )
    if not path.is_file():
        raise InputFileMissing(f"{what} {str(path)!r} does not exist (looked for it from {Path.cwd()}).")


def _load_yaml(text: str):
    """``yaml.safe_load``, refusing documents whose aliases expand past :data:`MAX_YAML_NODES` nodes."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _constructed(loader, node)
    finally:
        loader.dispose()


def _load_yaml_documents(text: str) -> list:
    """Every document of a YAML stream (``---`` between them), each checked as :func:`_load_yaml` checks one."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        documents = []
        while loader.check_node():
            documents.append(_constructed(loader, loader.get_node()))
        return documents
    finally:
        loader.dispose()


def _constructed(loader, node):
    _refuse_repeated_yaml_keys(node)
    expanded = _expanded_size(node)
    if expanded > MAX_YAML_NODES:
        raise InvalidInput(
            f"its aliases (*name) expand to {expanded:.3g} values, more than the {MAX_YAML_NODES:.0e} any input "
            "needs; write the values out, or remove the aliases."
        )
    return loader.construct_document(node)


#: input files a directory given to ``qcmb-dask run`` contributes, in name order
INPUT_SUFFIXES = (".json", ".yaml", ".yml")


def read_input_set(paths: list) -> list[tuple[str, Any]]:
    """Many inputs as users keep them -> (name, input) pairs in order: input files, every input file of a
    directory (by name), and every document of a multi-document YAML file (``name#1``, ``name#2`` ...).
    A file that cannot be read is returned as (name, the error) so that the others still run."""
    pairs: list[tuple[str, Any]] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if f.suffix.lower() in INPUT_SUFFIXES and f.is_file())
            if not files:
                raise InvalidInput(f"directory {str(path)!r} holds no input files ({', '.join(INPUT_SUFFIXES)}).")
        else:
            files = [path]
        for file in files:
            pairs += _inputs_of_file(file)
    return pairs


def _inputs_of_file(path: Path) -> list[tuple[str, Any]]:
    if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        return [(str(path), path)]
    try:
        documents = [doc for doc in _load_yaml_documents(path.read_text()) if doc is not None]
    except InvalidInput as err:
        return [(str(path), InvalidInput(f"{str(path)!r}: {err.problem}"))]
    except Exception as err:  # yaml.YAMLError
        return [(str(path), InvalidInput(f"could not parse many-body input file {str(path)!r}: {err}"))]
    if len(documents) == 1:
        return [(str(path), path)]
    return [(f"{path}#{number}", doc) for number, doc in enumerate(documents, start=1)]


def _refuse_repeated_yaml_keys(root) -> None:
    """A mapping that gives one key twice (PyYAML keeps the last without a word), refused naming both lines."""
    import yaml

    stack, seen_nodes = [root], set()
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if key.value in first_line:
                        raise InvalidInput(
                            f"the key {key.value!r} appears twice in one mapping (lines {first_line[key.value]} and "
                            f"{line}); YAML keeps only the last, so delete the one you do not mean."
                        )
                    first_line[key.value] = line
                stack += [key, value]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value


def _expanded_size(root) -> int:
    """How many nodes the document has once every alias is copied out (a shared node counts once per use)."""
    import yaml

    sizes, open_nodes = {}, set()
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            sizes[id(node)] = 1
            continue
        if children_done:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
        elif id(node) not in sizes:
            open_nodes.add(id(node))
            stack.append((node, True))
            for child in children:
                if id(child) in open_nodes:
                    raise InvalidInput("an alias (*name) refers to a value that contains it: the input never ends.")
                if id(child) not in sizes:
                    stack.append((child, False))
    return sizes[id(root)]


def _v1_input_class():
    try:
        from qcmanybody.models.v1 import ManyBodyInput as ManyBodyInputV1
    except Exception:  # pydantic.v1 unavailable (Python 3.14+): no v1 inputs can exist either
        return None
    return ManyBodyInputV1
