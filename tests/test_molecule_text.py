"""Molecules the way chemists write them: Psi4-style strings and xyz files give the molecule QCElemental gives."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

import qcmb_dask
from qcmb_dask import InvalidInput
from qcmb_dask.cli import main
from qcmb_dask.planning.molecule_text import atom_ranges, connected_fragments, from_psi4_string, from_xyz

from .conftest import WATER_TRIMER_ANGSTROM, assert_same_result, mbe_input, qcmanybody_reference


def psi4_string(nwaters: int = 3, charge_lines: dict | None = None, units: str = "angstrom") -> str:
    scale = 1.0 if units == "angstrom" else 1 / 0.52917721067
    blocks = []
    for i in range(nwaters):
        lines = [(charge_lines or {}).get(i, "")]
        lines += [
            f"{s} {x * scale:.8f} {y * scale:.8f} {z * scale:.8f}"
            for s, x, y, z in WATER_TRIMER_ANGSTROM[3 * i : 3 * i + 3]
        ]
        blocks.append("\n".join(line for line in lines if line))
    return f"units {units}\n" + "\n--\n".join(blocks) + "\nno_com\nno_reorient\n"


def xyz_text(nwaters: int = 3) -> str:
    atoms = WATER_TRIMER_ANGSTROM[: 3 * nwaters]
    return f"{len(atoms)}\nwater cluster\n" + "\n".join(f"{s} {x} {y} {z}" for s, x, y, z in atoms) + "\n"


@pytest.mark.parametrize(
    "charge_lines",
    [None, {0: "0 1"}, {0: "0 1", 1: "0 1", 2: "0 1"}, {1: "1 2"}],
    ids=["none", "first", "all", "a cation"],
)
@pytest.mark.parametrize("units", ["angstrom", "bohr"])
def test_a_psi4_string_gives_the_molecule_qcelemental_parses(charge_lines, units):
    from qcelemental.models import Molecule

    text = psi4_string(3, charge_lines, units)
    reference = Molecule.from_data(text)
    ours = qcmb_dask.plan({"molecule": text, "specification": mbe_input(3)["specification"]}).input.model.molecule
    np.testing.assert_allclose(ours.geometry, reference.geometry, atol=1e-10, rtol=0)
    assert list(ours.symbols) == list(reference.symbols)
    assert [list(f) for f in ours.fragments] == [list(f) for f in reference.fragments]
    for field in ("fragment_charges", "fragment_multiplicities", "molecular_charge", "molecular_multiplicity"):
        assert getattr(ours, field) == getattr(reference, field), field


def test_a_string_input_computes_qcmanybodys_answer_for_the_same_molecule():
    from qcelemental.models import Molecule

    text = psi4_string(2)
    data = {"molecule": text, "specification": mbe_input(2)["specification"]}
    parsed = Molecule.from_data(text)
    molecule = {
        "symbols": list(parsed.symbols),
        "geometry": parsed.geometry.ravel().tolist(),
        "fragments": [list(map(int, f)) for f in parsed.fragments],
        "fragment_charges": list(parsed.fragment_charges),
        "fragment_multiplicities": list(parsed.fragment_multiplicities),
    }
    reference_input = {**data, "molecule": molecule}
    assert_same_result(qcmb_dask.compute(data, "sync", progress=False), qcmanybody_reference(reference_input))


def test_xyz_fragments_are_the_connected_molecules_or_the_ranges_given():
    molecule = from_xyz(xyz_text(3))
    assert molecule["fragments"] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    np.testing.assert_allclose(
        molecule["geometry"], mbe_input(3)["molecule"]["geometry"], atol=1e-12, rtol=0
    )  # Angstrom in, Bohr out, with QCElemental's factor
    assert from_xyz(xyz_text(3), "0-5,6-8")["fragments"] == [[0, 1, 2, 3, 4, 5], [6, 7, 8]]
    assert atom_ranges("0-2, 3 - 5,6") == [[0, 1, 2], [3, 4, 5], [6]]
    # Water molecules in a (H2O)20-like box of separate waters: one fragment each, in order of their first atom.
    symbols, geometry = [], []
    for i in range(20):
        for s, x, y, z in WATER_TRIMER_ANGSTROM[:3]:
            symbols.append(s)
            geometry += [(x + 4.0 * (i % 5)) / 0.52917721067, (y + 4.0 * (i // 5)) / 0.52917721067, z / 0.52917721067]
    assert connected_fragments(symbols, geometry) == [[3 * i, 3 * i + 1, 3 * i + 2] for i in range(20)]


@pytest.mark.parametrize(
    "text, fragments, words",
    [
        ("3\nc\nO 0 0 0\nH 0 0 1\n", "auto", "fewer atom lines"),
        ("two\nc\n", "auto", "number of atoms"),
        ("1\nc\nQq 0 0 0\n", "auto", "line 3 .Qq 0 0 0.: .Qq. is not an element symbol"),
        ("1\nc\nO 0 0.0 0.0 0.0\n", "auto", "has 5 columns.*freeze flag"),
        ("1\nc\nO 0.0 0.0\n", "auto", "has 3 columns"),
        ("1\nc\nO 0.0 nan 0.0\n", "auto", "finite numbers"),
        ("1 atom\nc\nO 0.0 0.0 0.0\n", "auto", "line 1 must hold the number of atoms and nothing else"),
        (xyz_text(2) + "6\nnext frame\n", "auto", "one structure per file"),
        (xyz_text(2), "0-2;3-5", "atom ranges"),
        (xyz_text(2), "2-0", "ends before it starts"),
    ],
)
def test_xyz_mistakes_are_named(text, fragments, words):
    with pytest.raises(InvalidInput, match=words):
        from_xyz(text, fragments)


def test_string_mistakes_are_named():
    with pytest.raises(InvalidInput, match="no '--' line"):
        from_psi4_string("units angstrom\nO 0 0 0\nH 0 0 1\n")
    with pytest.raises(InvalidInput, match="fragment 1 .* has no atoms"):
        from_psi4_string("O 0 0 0\n--\n--\nH 0 0 3\n")
    with pytest.raises(InvalidInput, match="fragment 1"):
        from_psi4_string("O 0 0 0\nH 0 0 1\n--\nXx 0 0 3\n")


def test_the_command_line_runs_an_xyz_file_with_the_model_on_flags(tmp_path):
    xyz = tmp_path / "trimer.xyz"
    xyz.write_text(xyz_text(3))
    out = CliRunner().invoke(
        main,
        ["run", str(xyz), "--method", "hf", "--basis", "sto-3g", "--bsse", "cp,nocp", "--max-nbody", "2",
         "--cluster", "sync", "--no-cache", "-q", "--out", str(tmp_path / "r.json")],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    saved = qcmb_dask.load_result(tmp_path / "r.json")
    reference = qcmanybody_reference(mbe_input(3, keywords={"bsse_type": ["cp", "nocp"], "max_nbody": 2}))
    assert_same_result(saved, reference)
    missing = CliRunner().invoke(main, ["run", str(xyz), "--method", "hf"])
    assert missing.exit_code == 2 and "--basis" in missing.output
    json_input = tmp_path / "in.json"
    json_input.write_text(json.dumps(mbe_input(2)))
    both = CliRunner().invoke(main, ["plan", str(json_input), "--method", "hf"])
    assert both.exit_code == 2 and "only for molecule files" in both.output
    alone = CliRunner().invoke(main, ["plan", str(xyz)])
    assert alone.exit_code == 2 and "--method and --basis" in alone.output


def test_a_molecule_file_given_as_a_whole_input_says_what_it_lacks(tmp_path):
    xyz = tmp_path / "c.xyz"
    xyz.write_text(xyz_text(2))
    with pytest.raises(InvalidInput, match="holds a molecule only"):
        qcmb_dask.plan(str(xyz))
    mbin = qcmb_dask.manybody_input(str(xyz), method="hf", basis="sto-3g", bsse_type=["nocp"])
    assert len(qcmb_dask.plan(mbin)) == 3


@pytest.mark.slow
def test_the_angstrom_examples_compute_the_bohr_examples_answer():
    from pathlib import Path

    examples = Path(__file__).resolve().parent.parent / "examples"
    reference = qcmb_dask.compute(str(examples / "water-trimer.json"), "sync", progress=False)
    for name in ("water-trimer.psi4", "water-trimer.xyz"):
        mbin = qcmb_dask.manybody_input(str(examples / name), method="hf", basis="6-31g", bsse_type=["cp", "nocp"])
        ours = qcmb_dask.compute(mbin, "sync", progress=False)
        assert ours.properties.cp_corrected_interaction_energy == pytest.approx(
            reference.properties.cp_corrected_interaction_energy, abs=1e-9
        )
        assert ours.return_result == pytest.approx(reference.return_result, abs=1e-9)
