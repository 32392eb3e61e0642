"""The flags several commands share, and what they become: the model flags a whole input, KEY=VALUE pairs a dict.

Each shared flag is defined once here so that ``run``, ``optimize``, ``submit`` and ``job-script`` cannot drift
apart in what a flag means or how its help reads.
"""

from __future__ import annotations

import functools
from pathlib import Path

import click

from qcmb_dask.options import short_help

cluster_option = click.option(
    "--cluster-option", "cluster_option", multiple=True, metavar="KEY=VALUE", help="dask-jobqueue setting."
)
jobs = click.option("--jobs", type=int, help=short_help("jobs"))
workers = click.option("--workers", type=int, help=short_help("n_workers"))
gpus = click.option("--gpus", type=click.IntRange(min=0), help=short_help("gpus"))
processes_per_gpu = click.option(
    "--processes-per-gpu", type=click.IntRange(min=1), help=short_help("processes_per_gpu")
)
threads_per_task = click.option("--threads-per-task", type=int, help=short_help("threads_per_task"))
memory_per_task = click.option("--memory-per-task", metavar="GIB|SIZE", help=short_help("memory_per_task"))
_SCREENING_OPTIONS = (
    click.option(
        "--screening",
        metavar="ORDER=ANGSTROM,...",
        help="Distance-screened expansion (nocp, vmfc): e.g. 2=9,3=6 keeps a k-mer when all its fragment pairs are "
        "within the k-body cutoff (closest atoms) and all its (k-1)-mers are kept.",
    ),
    click.option(
        "--energy-screening",
        metavar="ORDER=EH,...",
        help="Energy-screened expansion (nocp, vmfc; energy, gradient): e.g. 3=1e-5,4=1e-6 computes a k-mer only when "
        "the measure of its (k-1)-mers' increments reaches the k-body threshold, decided as results arrive.",
    ),
    click.option(
        "--measure",
        metavar="NAME",
        help="What decides an energy-screened k-mer: min, max or sum of its (k-1)-mers' |increments|, or a cheap "
        "method's own increment of it, computed first (gfn2-xtb, gfn1-xtb). Default: max.",
    ),
    click.option(
        "--order-tolerance",
        metavar="EH",
        help="Choose the highest n-body order from the results (max_nbody='auto'; the input's is the ceiling): stop "
        "when the next level's estimated total is below EH.",
    ),
)


def screening(command):
    """The screening flags, given to ``command`` as one ``screening`` setting (what ``compute(screening=...)``
    takes: the distance cutoffs alone, or a dict with the energy thresholds, the measure and the order)."""

    @functools.wraps(command)
    def with_screening(*args, screening=None, energy_screening=None, measure=None, order_tolerance=None, **kwargs):
        return command(
            *args, screening=screening_setting(screening, energy_screening, measure, order_tolerance), **kwargs
        )

    for option in reversed(_SCREENING_OPTIONS):
        with_screening = option(with_screening)
    return with_screening


def screening_setting(distance, energy, measure, order_tolerance):
    """The flags as one ``screening`` value: the distance cutoffs as given where nothing else is."""
    if energy is None and measure is None and order_tolerance is None:
        return distance
    given = {
        "distance": distance,
        "energy": energy,
        "measure": measure,
        "max_nbody": "auto" if order_tolerance is not None else None,
        "tolerance": order_tolerance,
    }
    return {key: value for key, value in given.items() if value is not None}


#: The store a run reads and writes; ``--no-cache`` beside it turns it off.
result_store = click.option(
    "--cache", type=click.Path(file_okay=False), help="Result store directory (default ~/.cache/...)."
)
#: The store a command looks into or empties, passed on as ``path``.
store_directory = click.option(
    "--cache", "path", type=click.Path(file_okay=False), help="Store directory (default: the configured)."
)

MODEL_FLAGS = ("method", "basis", "program", "bsse", "max_nbody", "driver", "fragments")


def model(command):
    """Flags that make a whole input from a molecule file (``.xyz``, or a Psi4-style string in ``.psi4``); the
    command receives them together as ``model``."""
    model_flags = [
        click.option("--method", help="Molecule files: the QC method (e.g. hf, mp2, b3lyp)."),
        click.option(
            "--basis", help="Molecule files: the basis set (e.g. 6-31g, cc-pvdz); none for gfn2-xtb (--program tblite)."
        ),
        click.option("--program", default=None, help="Molecule files: the QC program (default pyscf)."),
        click.option(
            "--bsse", default=None, help="Molecule files: cp, nocp, vmfc or a comma-separated list (default cp)."
        ),
        click.option("--max-nbody", type=int, help="Molecule files: the highest n-body order (default: all)."),
        click.option(
            "--driver", type=click.Choice(["energy", "gradient", "hessian"]), help="Molecule files: default energy."
        ),
        click.option(
            "--fragments",
            default=None,
            help=".xyz files: auto (one fragment per connected molecule, the default) or 0-based atom ranges, "
            "e.g. 0-2,3-5,6-8.",
        ),
    ]

    @functools.wraps(command)
    def with_model(*args, **kwargs):
        return command(*args, model={name: kwargs.pop(name) for name in MODEL_FLAGS}, **kwargs)

    for flag in reversed(model_flags):
        with_model = flag(with_model)
    return with_model


def input_from(input_file: str, model: dict):
    """INPUT as compute takes it: the file itself, or the input made from a molecule file and the model flags."""
    from qcmb_dask.planning.inputs import is_molecule_file, manybody_input

    given = {k: v for k, v in model.items() if v is not None}
    if not is_molecule_file(Path(input_file)):
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise click.UsageError(
                f"{flags}: only for molecule files (.xyz, .psi4); {input_file} is a whole input with its own "
                "specification: change it there."
            )
        return input_file
    from qcmb_dask.programs.tblite import METHODS as OWN_BASIS  # GFN-xTB: its basis comes with the method

    needed = ("method",) if str(given.get("method", "")).lower() in OWN_BASIS else ("method", "basis")
    missing = [f"--{k}" for k in needed if k not in given]
    if missing:
        raise click.UsageError(
            f"{input_file} is a molecule: give the model chemistry with {' and '.join(missing)} "
            "(e.g. --method hf --basis 6-31g)."
        )
    bsse = given.pop("bsse", "cp")
    given["bsse_type"] = [b.strip() for b in bsse.split(",")] if "," in bsse else bsse
    return manybody_input(input_file, **given)


def parse_key_values(pairs: tuple[str, ...]) -> dict | None:
    """``KEY=VALUE`` pairs; values are read as YAML (numbers, lists, true/false), as in a profile."""
    import yaml

    parsed = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(
                f"{pair!r}: expected KEY=VALUE, e.g. account=chem42", param_hint="--cluster-option"
            )
        key, value = pair.split("=", 1)
        parsed[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return parsed or None
